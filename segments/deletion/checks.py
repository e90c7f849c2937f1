"""The invariants of a deletion job, checked against the database.

``python manage.py verify_deletion JOB_ID`` and the fault-injection tests
ask the same questions after a job, whatever happened to it on the way:

- Which snapshot profiles must be gone: all of them once the job completed;
  for a job that stopped (cancelled, failed) or is still going, those up to
  its ``cursor``. Those profiles, and every row that pointed at them, must
  not exist; profiles past the cursor may.
- Rows kept for reporting (messages, message activity) are unlinked from the
  profile; none of those rows may still hold personal data.
- The job's counters agree with its snapshot: deleted + skipped is the number
  of snapshot rows up to the cursor, and the total once it completed.

The tables come from ``Profile._meta.related_objects``, as in
``profiles.erasure``, so a table added later is checked too.
"""

from dataclasses import dataclass, field

from django.db import connection, models
from django.db.models import Q

from profiles.models import Profile
from segments.models import DeletionJob, DeletionJobProfile

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
    """Check the job's invariants; the report says what holds and what does not."""
    job.refresh_from_db()
    report = DeletionReport(job)
    handled = _handled_snapshot(job)
    report.findings.append(_profiles_gone(job, handled))
    report.findings.extend(_related_rows_gone(handled))
    report.findings.extend(_kept_rows_anonymized())
    report.findings.extend(_counters_agree(job))
    return report


def _handled_snapshot(job: DeletionJob) -> tuple[str, list]:
    """SQL (and params) for the snapshot ids that must be gone by now."""
    table = connection.ops.quote_name(DeletionJobProfile._meta.db_table)
    if job.status == DeletionJob.Status.COMPLETED:
        return f"SELECT profile_id FROM {table} WHERE job_id = %s", [job.pk]  # noqa: S608
    return (
        f"SELECT profile_id FROM {table} WHERE job_id = %s AND profile_id <= %s",  # noqa: S608
        [job.pk, job.cursor],
    )


def _scope(job: DeletionJob) -> str:
    if job.status == DeletionJob.Status.COMPLETED:
        return "the snapshot"
    return f"the snapshot up to the cursor ({job.cursor})"


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


def _kept_rows_anonymized() -> list[Finding]:
    """Rows unlinked from their profile hold none of their PERSONAL_FIELDS."""
    findings = []
    for relation in Profile._meta.related_objects:
        model = relation.related_model
        personal = getattr(model, "PERSONAL_FIELDS", ())
        if relation.many_to_many or relation.on_delete is not models.SET_NULL or not personal:
            continue
        still_set = Q()
        for name in personal:
            model_field = model._meta.get_field(name)
            still_set |= Q(**{f"{name}__isnull": False}) if model_field.null else ~Q(**{name: ""})
        unlinked = model.objects.filter(**{f"{relation.field.name}__isnull": True})
        count = unlinked.filter(still_set).count()
        label = f"{model._meta.label_lower} anonymized"
        findings.append(
            Finding(
                label,
                count == 0,
                f"No unlinked row holds {', '.join(personal)}."
                if count == 0
                else f"{count:,} unlinked rows still hold {', '.join(personal)}.",
            )
        )
    return findings


def _counters_agree(job: DeletionJob) -> list[Finding]:
    snapshot = DeletionJobProfile.objects.filter(job=job)
    snapshot_total = snapshot.count()
    up_to_cursor = snapshot.filter(profile_id__lte=job.cursor).count()
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
            + f" the snapshot rows up to the cursor ({up_to_cursor:,}).",
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


def _sample(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SAMPLE_SIZE])
    return shown + (", …" if len(ids) > SAMPLE_SIZE else "")
