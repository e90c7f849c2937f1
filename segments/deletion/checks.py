"""The invariants of a deletion job, checked against the database.

``python manage.py verify_deletion JOB_ID`` and the fault-injection tests
ask the same questions after a job, whatever happened to it on the way:

- Which snapshot profiles must be gone: all of them once the job completed;
  for a job that stopped (cancelled, failed) or is still going, those up to
  its ``cursor``. Those profiles, and every row that pointed at them, must
  not exist; profiles past the cursor may.
- Rows kept for reporting (messages, message activity) are unlinked from the
  profile; none of this job's kept rows (anonymized on the job's days, or
  hanging off such a row) may still hold personal data or a URL longer than
  erasure keeps. Rows erasure never touched (another person's) are not
  looked at, so they cannot fail the check.
- Django admin's log names none of them: every entry about a handled profile,
  and every entry written up to the job's end about its kept rows, reads
  "… of an erased person" with no change message.
- The job's counters agree with its snapshot: deleted + skipped is the number
  of snapshot rows up to the cursor, and the total once it completed.
- A job run by parallel runners: each runner's cursor stands for the
  cursor above, over its own range; the ranges are disjoint and together
  the whole snapshot, and the runners' counts add up to the job's.
- Its receipt holds digests only, one entry per deleted profile, in the
  database and (once the job has ended) in its file in DELETION_RECEIPTS_DIR;
  and every email or user-id value in its rules (summary and file) is a
  64-hex digest (the deleted people cannot be named after their erasure, so
  this is what can be checked).

The tables come from ``Profile._meta.related_objects``, as in
``profiles.erasure``, so a table added later is checked too.
"""

from dataclasses import dataclass, field
from datetime import UTC, timedelta
from itertools import pairwise

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from profiles.erasure import ANONYMIZED_ON, erased_repr, kept_rows, personal_data_left_sql
from profiles.models import Profile, Suppression
from segments.deletion.receipts import (
    DIGEST,
    ReceiptUnreadable,
    receipt_path,
    receipt_read_file,
    receipt_rules_redacted,
    receipt_summary,
)
from segments.models import (
    DeletionJob,
    DeletionJobProfile,
    DeletionReceiptBatch,
    DeletionRunner,
)

SAMPLE_SIZE = 5


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str


@dataclass
class DeletionReport:
    job: DeletionJob
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(finding.ok for finding in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.ok]


def deletion_verify(*, job: DeletionJob) -> DeletionReport:
    """Check the job's invariants; the report says what holds and what does not.

    Every check reads one snapshot of the database (REPEATABLE READ), so a
    job still running, one runner or several, is seen at one moment: its
    counters, cursors and profiles all as of the same commit."""
    if connection.in_atomic_block:
        return _verify(job)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _verify(job)


def _verify(job: DeletionJob) -> DeletionReport:
    job.refresh_from_db()
    report = DeletionReport(job)
    handled = _handled_snapshot(job)
    report.findings.append(_profiles_gone(job, handled))
    report.findings.extend(_related_rows_gone(handled))
    report.findings.extend(_kept_rows_anonymized(job))
    if apps.is_installed("django.contrib.admin"):
        report.findings.append(_admin_log_clean(job, handled))
    report.findings.extend(_counters_agree(job))
    if _has_runners(job):
        report.findings.extend(_runners_agree(job))
    report.findings.extend(_receipt_holds_digests_only(job))
    return report


def _handled_snapshot(job: DeletionJob) -> tuple[str, list]:
    """SQL (and params) for the snapshot ids that must be gone by now."""
    table = connection.ops.quote_name(DeletionJobProfile._meta.db_table)
    if job.status == DeletionJob.Status.COMPLETED:
        return f"SELECT profile_id FROM {table} WHERE job_id = %s", [job.pk]  # noqa: S608
    if _has_runners(job):
        return _handled_by_runners(job)
    # Profiles set aside because someone else held them are behind the
    # cursor but not handled yet.
    return (
        f"SELECT profile_id FROM {table} WHERE job_id = %s AND profile_id <= %s "  # noqa: S608
        "AND NOT profile_id = ANY(%s)",
        [job.pk, job.cursor, list(job.deferred_profile_ids)],
    )


def _handled_by_runners(job: DeletionJob) -> tuple[str, list]:
    """Each runner's range up to its cursor, less what it set aside."""
    table = connection.ops.quote_name(DeletionJobProfile._meta.db_table)
    runners = connection.ops.quote_name(DeletionRunner._meta.db_table)
    return (
        f"SELECT s.profile_id FROM {table} s JOIN {runners} r "  # noqa: S608
        'ON r.job_id = s.job_id AND s.profile_id BETWEEN r.low AND r."cursor" '
        "WHERE s.job_id = %s AND NOT s.profile_id = ANY(r.deferred_profile_ids)",
        [job.pk],
    )


def _scope(job: DeletionJob) -> str:
    if job.status == DeletionJob.Status.COMPLETED:
        return "the snapshot"
    aside = (
        f", less the {len(job.deferred_profile_ids):,} set aside"
        if job.deferred_profile_ids
        else ""
    )
    if _has_runners(job):
        return f"the snapshot up to its runners' cursors{aside}"
    return f"the snapshot up to the cursor ({job.cursor}){aside}"


def _has_runners(job: DeletionJob) -> bool:
    return DeletionRunner.objects.filter(job=job).exists()


def _profiles_gone(job: DeletionJob, handled: tuple[str, list]) -> Finding:
    sql, params = handled
    table = connection.ops.quote_name(Profile._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id IN ({sql}) ORDER BY id",  # noqa: S608
            params,
        )
        left = [row[0] for row in cursor.fetchall()]
    if not left:
        return Finding("profiles", True, f"No profile of {_scope(job)} exists.")
    return Finding(
        "profiles",
        False,
        f"{len(left):,} profiles of {_scope(job)} still exist (ids {_sample(left)}).",
    )


def _related_rows_gone(handled: tuple[str, list]) -> list[Finding]:
    """No row, deleted or kept, may still point at a handled profile."""
    sql, params = handled
    qn = connection.ops.quote_name
    findings = []
    for relation in Profile._meta.related_objects:
        if relation.many_to_many:
            through = relation.through._meta
            column = next(
                f.column for f in through.fields if f.is_relation and f.related_model is Profile
            )
            table, label = through.db_table, through.label_lower
        else:
            model = relation.related_model
            table, column = model._meta.db_table, relation.field.column
            label = model._meta.label_lower
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {qn(table)} WHERE {qn(column)} IN ({sql})",  # noqa: S608
                params,
            )
            count = cursor.fetchone()[0]
        findings.append(
            Finding(
                label,
                count == 0,
                "No row points at a handled profile."
                if count == 0
                else f"{count:,} rows still point at handled profiles.",
            )
        )
    return findings


def _job_days(job: DeletionJob) -> tuple:
    """The first and last day (UTC) on which this job can have anonymized rows."""
    end = job.finished_at or timezone.now()
    return job.created_at.astimezone(UTC).date(), end.astimezone(UTC).date()


def _kept_rows_of_job(kept, job: DeletionJob) -> tuple[str, list]:
    """SQL condition (on alias ``t``) for the rows of a kept model this job
    may have anonymized: by their own date, or by the date of the row they
    hang off (an open of an anonymized message)."""
    qn = connection.ops.quote_name
    first, last = _job_days(job)
    conditions, params = [], []
    if any(f.name == ANONYMIZED_ON for f in kept.model._meta.concrete_fields):
        column = qn(kept.model._meta.get_field(ANONYMIZED_ON).column)
        conditions.append(f"t.{column} BETWEEN %s AND %s")
        params += [first, last]
    for parent, fk in kept.parents:
        parent_column = qn(parent._meta.get_field(ANONYMIZED_ON).column)
        conditions.append(
            f"t.{qn(fk.column)} IN (SELECT {qn(parent._meta.pk.column)} "  # noqa: S608
            f"FROM {qn(parent._meta.db_table)} WHERE {parent_column} BETWEEN %s AND %s)"
        )
        params += [first, last]
    return " OR ".join(conditions) or "false", params


def _kept_rows_anonymized(job: DeletionJob) -> list[Finding]:
    """This job's kept rows hold none of their personal fields, and no URL
    longer than erasure keeps (the same SQL as ``profiles.erasure``)."""
    qn = connection.ops.quote_name
    findings = []
    for kept in kept_rows():
        model = kept.model
        left = personal_data_left_sql(model, "t")
        if left == "false":
            continue
        scope, params = _kept_rows_of_job(kept, job)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT t.{qn(model._meta.pk.column)} FROM {qn(model._meta.db_table)} t "  # noqa: S608
                f"WHERE ({scope}) AND ({left}) ORDER BY 1",
                params,
            )
            ids = [row[0] for row in cursor.fetchall()]
        personal = [
            *getattr(model, "PERSONAL_FIELDS", ()),
            *getattr(model, "PERSONAL_URL_FIELDS", ()),
        ]
        findings.append(
            Finding(
                f"{model._meta.label_lower} anonymized",
                not ids,
                f"No row this job kept holds {', '.join(personal)}."
                if not ids
                else f"{len(ids):,} rows this job kept still hold {', '.join(personal)} "
                f"(ids {_sample(ids)}).",
            )
        )
    return findings


def _admin_log_clean(job: DeletionJob, handled: tuple[str, list]) -> Finding:
    """No admin log entry about a handled profile or this job's kept rows
    says who it was about."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    qn = connection.ops.quote_name
    log = qn(LogEntry._meta.db_table)
    handled_sql, handled_params = handled
    queries = [
        (
            f"SELECT l.id FROM {log} l WHERE l.content_type_id = %s "  # noqa: S608
            f"AND l.object_id IN (SELECT profile_id::text FROM ({handled_sql}) h) "
            "AND NOT (l.object_repr = %s AND l.change_message = '')",
            [ContentType.objects.get_for_model(Profile).pk, *handled_params, erased_repr(Profile)],
        )
    ]
    written_by = job.finished_at or timezone.now()
    for kept in kept_rows():
        model = kept.model
        scope, params = _kept_rows_of_job(kept, job)
        queries.append(
            (
                f"SELECT l.id FROM {log} l WHERE l.content_type_id = %s "  # noqa: S608
                f"AND l.action_time <= %s AND l.object_id IN (SELECT "
                f"t.{qn(model._meta.pk.column)}::text FROM {qn(model._meta.db_table)} t "
                f"WHERE {scope}) AND NOT (l.object_repr = %s AND l.change_message = '')",
                [
                    ContentType.objects.get_for_model(model).pk,
                    written_by,
                    *params,
                    erased_repr(model),
                ],
            )
        )
    ids = []
    with connection.cursor() as cursor:
        for sql, params in queries:
            cursor.execute(sql, params)
            ids += [row[0] for row in cursor.fetchall()]
    if not ids:
        return Finding("admin log", True, "No admin log entry names a person of this job.")
    return Finding(
        "admin log",
        False,
        f"{len(ids):,} admin log entries about this job's profiles or kept rows still say "
        f"whom they were about (log ids {_sample(sorted(ids))}).",
    )


def _counters_agree(job: DeletionJob) -> list[Finding]:
    snapshot = DeletionJobProfile.objects.filter(job=job)
    snapshot_total = snapshot.count()
    if _has_runners(job):
        sql, params = _handled_by_runners(job)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({sql}) h", params)  # noqa: S608
            up_to_cursor = cursor.fetchone()[0]
    else:
        up_to_cursor = (
            snapshot.filter(profile_id__lte=job.cursor)
            .exclude(profile_id__in=job.deferred_profile_ids)
            .count()
        )
    findings = [
        Finding(
            "total",
            job.total == snapshot_total,
            f"The job's total ({job.total:,}) "
            + ("is" if job.total == snapshot_total else "is not")
            + f" the snapshot's size ({snapshot_total:,}).",
        ),
        Finding(
            "handled",
            job.handled == up_to_cursor,
            f"Deleted + skipped ({job.deleted:,} + {job.skipped:,}) "
            + ("equals" if job.handled == up_to_cursor else "does not equal")
            + f" the snapshot rows up to the cursor ({up_to_cursor:,}"
            + (
                f", less {len(job.deferred_profile_ids):,} set aside)"
                if job.deferred_profile_ids
                else ")"
            )
            + ".",
        ),
    ]
    if job.status == DeletionJob.Status.COMPLETED:
        findings.append(
            Finding(
                "completed",
                job.handled == snapshot_total,
                f"The completed job handled {job.handled:,} of {snapshot_total:,} profiles.",
            )
        )
    return findings


def _runners_agree(job: DeletionJob) -> list[Finding]:
    """The runners' ranges are disjoint and cover the snapshot; their counts
    and set-aside ids add up to the job's."""
    runners = list(DeletionRunner.objects.filter(job=job).order_by("low"))
    overlaps = [f"{a.number} and {b.number}" for a, b in pairwise(runners) if b.low <= a.high]
    table = connection.ops.quote_name(DeletionJobProfile._meta.db_table)
    runner_table = connection.ops.quote_name(DeletionRunner._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {table} s WHERE s.job_id = %s AND NOT EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {runner_table} r WHERE r.job_id = s.job_id "
            "AND s.profile_id BETWEEN r.low AND r.high)",
            [job.pk],
        )
        outside = cursor.fetchone()[0]
    handled = sum(runner.handled for runner in runners)
    aside = sorted(pk for runner in runners for pk in runner.deferred_profile_ids)
    return [
        Finding(
            "runner ranges",
            not overlaps and not outside,
            f"The {len(runners)} runners' ranges are disjoint and cover the snapshot."
            if not overlaps and not outside
            else f"Runners {', '.join(overlaps) or '-'} overlap; {outside:,} snapshot rows "
            "are in no runner's range.",
        ),
        Finding(
            "runner counts",
            handled == job.handled and aside == sorted(job.deferred_profile_ids),
            f"The runners handled {handled:,} profiles and set {len(aside):,} aside; the job "
            f"says {job.handled:,} and {len(job.deferred_profile_ids):,}.",
        ),
    ]


def _sample(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SAMPLE_SIZE])
    return shown + (", …" if len(ids) > SAMPLE_SIZE else "")


def _receipt_holds_digests_only(job: DeletionJob) -> list[Finding]:
    """The receipt names nobody in clear: each entry is a pair of 64-hex
    digests (or none), there is one per deleted profile, and the file says
    the same as the database."""
    pattern = DIGEST.pattern
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Both arrays of a batch run in step (one position, one profile).
        cursor.execute(
            f"""
            SELECT count(*), count(*) FILTER (WHERE u !~ %(pattern)s OR e !~ %(pattern)s),
                   (SELECT count(*) FROM {qn(DeletionReceiptBatch._meta.db_table)} b
                    WHERE b.job_id = %(job)s AND (cardinality(b.user_id_sha256)
                        IS DISTINCT FROM cardinality(b.email_sha256)))
            FROM {qn(DeletionReceiptBatch._meta.db_table)} b,
                 unnest(b.user_id_sha256, b.email_sha256) AS d(u, e)
            WHERE b.job_id = %(job)s
            """,  # noqa: S608 (table name from model metadata)
            {"job": job.pk, "pattern": pattern},
        )
        count, not_digests, out_of_step = cursor.fetchone()
    not_digests += Suppression.objects.filter(job_id=job.pk).exclude(digest__regex=pattern).count()
    findings = [
        Finding(
            "receipt",
            not_digests == 0 and out_of_step == 0 and count == job.deleted,
            f"The receipt lists {count:,} erased profiles for {job.deleted:,} deleted"
            + (
                f"; {not_digests:,} of its values (or of its suppressions) are not SHA-256 digests"
                if not_digests
                else ""
            )
            + (
                f"; in {out_of_step:,} of its batches the user id and email digests do not pair up"
                if out_of_step
                else ""
            )
            + ".",
        )
    ]
    # The people a job erased cannot be named after their erasure, so the
    # rules are checked instead: every email or user-id value is a digest.
    rules_ok = receipt_rules_redacted(receipt_summary(job)["segment"]["rules"])
    findings.append(
        Finding(
            "receipt rules",
            rules_ok,
            "Every email or user id in the receipt's rules is a SHA-256 digest."
            if rules_ok
            else "The receipt's rules hold an email or user id that is not a SHA-256 digest.",
        )
    )
    path = receipt_path(job.pk)
    if job.is_active:
        return findings
    ended = job.finished_at
    written = job.receipt_written_at is not None and (
        ended is None or job.receipt_written_at >= ended
    )
    settling = ended is not None and timezone.now() - ended < timedelta(
        seconds=settings.DELETION_STALE_AFTER_SECONDS
    )
    if not written and settling:
        # The worker writes the file just after the ending commits, and the
        # watchdog writes it if that worker stopped first: not due yet.
        findings.append(
            Finding(
                "receipt file",
                True,
                f"The job ended moments ago; its receipt file ({path.name}) is being written "
                "by the worker (or, if it stopped, by the watchdog). Check again shortly.",
            )
        )
        return findings
    if not path.exists():
        findings.append(
            Finding(
                "receipt file",
                False,
                f"The ended job has no receipt file ({path}): a restored backup could not "
                "replay it. The worker's log says why it was not written.",
            )
        )
        return findings
    try:
        summary, file_entries = receipt_read_file(path)
        in_file = sum(1 for _ in file_entries)  # each entry is checked to be digests
        expected = set(receipt_summary(job))
        file_rules_ok = receipt_rules_redacted((summary.get("segment") or {}).get("rules"))
        ok = set(summary) == expected and in_file == count and file_rules_ok
        detail = (
            f"The receipt file {path.name} lists {in_file:,} erased profiles, as digests only"
            + ("" if ok else f", and should list {count:,} with the fields {sorted(expected)}")
            + (
                ""
                if file_rules_ok
                else "; its rules hold an email or user id that is not a SHA-256 digest"
            )
            + "."
        )
    except (OSError, ReceiptUnreadable) as exc:
        ok, detail = False, f"The receipt file cannot be read as digests only: {exc}"
    findings.append(Finding("receipt file", ok, detail))
    return findings
