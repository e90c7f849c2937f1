"""Deletion receipts: what a job erased, proved without keeping who.

Each batch records, in its own transaction and from the rows it is about to
delete (``INSERT ... SELECT`` before the ``DELETE``), the SHA-256 digest of
every erased profile's user id and of its email (trimmed, lower-cased), so
the receipt holds exactly the people erased: a batch that rolls back leaves
no entry, a profile found gone leaves none. With "stop them from coming
back", the same statement puts those digests on the suppression list
(``profiles.Suppression``), so the person is suppressed from the moment
their profile is gone.

When a job ends (completed, failed or cancelled), the worker also writes the
receipt to ``DELETION_RECEIPTS_DIR`` as a JSON file, atomically (a temporary
file renamed into place), outside the database: a backup restored later may
predate the job, and ``manage.py reapply_deletions`` redoes it from there.

The digests are not anonymous: anyone who knows an email can compute its
digest and find it here. They name nobody in clear, which is what lets a
data subject's request be answered ("your address's digest is in receipt
42") and a deletion be replayed after a restore, without keeping addresses.
"""

import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import F, Func, Q, Sum
from django.utils import timezone

from profiles.models import Profile, Suppression
from segments.models import DeletionJob, DeletionReceiptBatch
from segments.rules import Described, rules_describe

logger = logging.getLogger(__name__)

FORMAT = "vero_admin.deletion_receipt"
VERSION = 1
HASHING = "SHA-256, hex, of the UTF-8 user id as stored, and of the email trimmed and lower-cased"
DIGEST = re.compile(r"^[0-9a-f]{64}$")
# The line that opens the list of erased profiles; each entry follows on a
# line of its own, so the file can be read back without loading it whole.
PROFILES_OPENING = '"profiles": ['
FILE_PATTERN = "deletion-*.json"
# One profile's line as receipt_chunks writes it; anything else is parsed as JSON.
ENTRY_LINE = re.compile(r'^\s*,?\s*\[(?:null|"([0-9a-f]{64})"), ?(?:null|"([0-9a-f]{64})")\]\s*$')

# Same normalisation as Suppression.digest_of and the ingestion API's.
USER_ID_SQL = "encode(sha256(convert_to({col}, 'UTF8')), 'hex')"
EMAIL_SQL = (
    "CASE WHEN btrim({col}) = '' THEN NULL "
    "ELSE encode(sha256(convert_to(lower(btrim({col})), 'UTF8')), 'hex') END"
)


def receipt_capture_sql(*, ids: str, job: str, suppress: bool, into: str = "") -> str:
    """The statement that records these profiles' digests on the job's
    receipt (and, with ``suppress``, on the suppression list), and reads as
    how many it recorded. ``ids`` and ``job`` are SQL expressions for the
    batch's id array and the job's id: psycopg parameters for
    :func:`receipt_capture`, variables inside the batch function that
    :mod:`segments.deletion.batch` builds, so the statement is written once.

    With ``suppress`` the digests are taken once (a CTE), for the receipt's
    row and the suppression list both. No row is written when none of the
    ids exists.
    ``into`` names the function's variable that takes the count.
    """
    qn = connection.ops.quote_name
    profiles = qn(Profile._meta.db_table)
    batches = qn(DeletionReceiptBatch._meta.db_table)
    user_id, email = USER_ID_SQL.format(col="user_id"), EMAIL_SQL.format(col="email")
    into = f" INTO {into}" if into else ""
    if not suppress:
        return (
            f"INSERT INTO {batches} (job_id, user_id_sha256, email_sha256) "  # noqa: S608
            f"SELECT {job}, array_agg({user_id}), array_agg({email}) FROM {profiles} "
            f"WHERE id = ANY({ids}) HAVING count(*) > 0 "
            f"RETURNING cardinality(user_id_sha256){into}"
        )
    suppressions = qn(Suppression._meta.db_table)
    return (
        f"WITH digests AS MATERIALIZED (SELECT {user_id} AS u, {email} AS e "  # noqa: S608
        f"FROM {profiles} WHERE id = ANY({ids})), "
        f"recorded AS (INSERT INTO {batches} (job_id, user_id_sha256, email_sha256) "
        f"SELECT {job}, array_agg(u), array_agg(e) FROM digests HAVING count(*) > 0), "
        f"suppressed AS (INSERT INTO {suppressions} (kind, digest, job_id, created_at) "
        f"SELECT DISTINCT kind, digest, {job}, now() FROM digests, LATERAL (VALUES "
        f"('{Suppression.Kind.USER_ID}', u), ('{Suppression.Kind.EMAIL}', e)) "
        "AS d(kind, digest) WHERE digest IS NOT NULL ON CONFLICT (digest, kind) DO NOTHING) "
        f"SELECT count(*){into} FROM digests"
    )


def receipt_capture(*, job_id: int, profile_ids: list[int], suppress: bool) -> int:
    """Record the digests of these profiles on the job's receipt (and, with
    ``suppress``, on the suppression list), in the caller's transaction.

    Call it with the batch's profiles locked, just before they are erased:
    one set-based statement, whatever the batch size. Ids of profiles that
    no longer exist add nothing, as erasure skips them too.
    """
    if not profile_ids:
        return 0
    statement = receipt_capture_sql(ids="%(ids)s::bigint[]", job="%(job)s", suppress=suppress)
    with connection.cursor() as cursor:
        cursor.execute(statement, {"job": job_id, "ids": list(profile_ids)})
        row = cursor.fetchone()
    return row[0] if row else 0


def receipt_entries(
    job_id: int, *, chunk_size: int = 5000
) -> Iterator[tuple[str | None, str | None]]:
    """Each erased profile's (user id digest, email digest), in the order
    the batches erased them, read with a server-side cursor so memory stays
    flat at any size."""
    qn = connection.ops.quote_name
    batches = qn(DeletionReceiptBatch._meta.db_table)
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            f"SELECT d.u, d.e FROM {batches} b, "  # noqa: S608
            "unnest(b.user_id_sha256, b.email_sha256) WITH ORDINALITY AS d(u, e, n) "
            "WHERE b.job_id = %s ORDER BY b.id, d.n",
            [job_id],
        )
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


def receipt_entry_count(job_id: int) -> int:
    return (
        DeletionReceiptBatch.objects.filter(job_id=job_id).aggregate(
            n=Sum(Func(F("user_id_sha256"), function="cardinality"))
        )["n"]
        or 0
    )


# --- The document --------------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat() if value else None


IDENTIFIER_FIELDS = ("email", "user_id")
# How each kind of redacted value was hashed, written beside its digest.
HASHED_ADDRESS = "the email address, trimmed and lower-cased"
HASHED_USER_ID = "the user id, as written"
HASHED_FRAGMENT = "the text in the rule, as written (part of an email or user id)"
HASHED_LABELS = {
    HASHED_ADDRESS: "the address whose SHA-256 is {}",
    HASHED_USER_ID: "the user id whose SHA-256 is {}",
    HASHED_FRAGMENT: "a text whose SHA-256 (as written) is {}",
}


def _is_identifier_condition(rules) -> bool:
    return (
        isinstance(rules, dict)
        and rules.get("type") == "property"
        and rules.get("field") in IDENTIFIER_FIELDS
        and "value" in rules
    )


def _redacted_value(field: str, operator, value):
    """The digest standing for a value compared with an email or user id."""
    if isinstance(value, list):
        return [_redacted_value(field, operator, item) for item in value]
    if isinstance(value, dict) and DIGEST.match(str(value.get("sha256"))):
        return value  # already redacted
    text = value if isinstance(value, str) else json.dumps(value)
    if operator in ("equals", "not_equals"):
        kind = Suppression.Kind.EMAIL if field == "email" else Suppression.Kind.USER_ID
        hashed = HASHED_ADDRESS if field == "email" else HASHED_USER_ID
        return {"sha256": Suppression.digest_of(kind, text), "hashed": hashed}
    # contains, starts with, in-lists…: a fragment, hashed exactly as written.
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "hashed": HASHED_FRAGMENT}


def receipt_rules(rules):
    """The rules as confirmed, redacted for the receipt (its page, its JSON
    download and its file): structure, fields and operators kept; the value
    of every condition on an email or user id, whatever its operator,
    replaced by its SHA-256 digest (labelled with how it was hashed). Other
    values (an attribute's, "country is FR") are kept as written."""
    if isinstance(rules, list):
        return [receipt_rules(item) for item in rules]
    if not isinstance(rules, dict):
        return rules
    out = {key: receipt_rules(value) for key, value in rules.items()}
    if _is_identifier_condition(rules):
        out["value"] = _redacted_value(rules["field"], rules.get("operator"), rules["value"])
    return out


def receipt_rules_values(rules) -> Iterator:
    """Every value of a condition on an email or user id in these rules (as
    a receipt holds them: each should be a redacted digest)."""
    if isinstance(rules, list):
        for item in rules:
            yield from receipt_rules_values(item)
    elif isinstance(rules, dict):
        if _is_identifier_condition(rules):
            value = rules["value"]
            yield from value if isinstance(value, list) else [value]
        for key, value in rules.items():
            if key != "value" or not _is_identifier_condition(rules):
                yield from receipt_rules_values(value)


def receipt_rules_redacted(rules) -> bool:
    """Each email or user-id value in these rules is a 64-hex digest."""
    return all(
        isinstance(value, dict)
        and isinstance(value.get("sha256"), str)
        and DIGEST.match(value["sha256"]) is not None
        for value in receipt_rules_values(rules)
    )


def receipt_rules_describe(redacted) -> Described:
    """The redacted rules in the segment page's words, nested groups and
    all; each digest is shown as what it stands for ("the address whose
    SHA-256 is …"), never as a value someone typed."""
    labels: dict[str, str] = {}

    def placeholder(value):
        if isinstance(value, list):
            return [placeholder(item) for item in value]
        if isinstance(value, dict) and "sha256" in value:
            token = f"receipt-digest-{len(labels)}-{secrets.token_hex(8)}"
            label = HASHED_LABELS.get(value.get("hashed"), "a value whose SHA-256 is {}")
            labels[f"“{token}”"] = label.format(value["sha256"])
            return token
        return value

    def shown(rules):
        if isinstance(rules, list):
            return [shown(item) for item in rules]
        if not isinstance(rules, dict):
            return rules
        out = {key: shown(value) for key, value in rules.items()}
        if _is_identifier_condition(rules):
            out["value"] = placeholder(rules["value"])
        return out

    def relabel(node: Described) -> Described:
        text = node.text
        for token, label in labels.items():
            text = text.replace(token, label)
        return Described(text, [relabel(child) for child in node.children])

    return relabel(rules_describe(shown(redacted)))


def receipt_summary(job: DeletionJob) -> dict:
    """Everything in the receipt but the list of erased profiles."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "job": job.pk,
        "status": job.status,
        "confirmed_by": job.created_by_username,
        "confirmed_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "segment": {
            "id": job.segment_id,
            "name": job.segment_name,
            "rules": receipt_rules(job.rules_at_confirmation),
        },
        "suppressed": job.suppress,
        "counts": {
            "profiles_requested": job.total,
            "profiles_deleted": job.deleted,
            "profiles_skipped": job.skipped,
            "events_deleted": job.events_deleted,
            "preferences_deleted": job.preferences_deleted,
            "memberships_deleted": job.memberships_deleted,
            "messages_anonymized": job.messages_anonymized,
            "activity_anonymized": job.activity_anonymized,
        },
        "hashing": HASHING,
        "profile_fields": ["user_id_sha256", "email_sha256"],
    }


def receipt_chunks(job: DeletionJob) -> Iterator[str]:
    """The receipt as JSON text, in pieces: the summary, then one line per
    erased profile (``[user id digest, email digest]``), read from the
    database with a server-side cursor so memory stays flat at any size."""
    summary = json.dumps(receipt_summary(job), indent=1)
    yield summary[:-2] + ",\n " + PROFILES_OPENING + "\n"
    entries = receipt_entries(job.pk)
    lines, first = [], True
    for entry in entries:
        lines.append(("  " if first else ", ") + json.dumps(list(entry)) + "\n")
        first = False
        if len(lines) >= 5000:
            yield "".join(lines)
            lines = []
    yield "".join(lines) + " ]\n}\n"


# --- The file ----------------------------------------------------------------


def receipt_path(job_id: int, directory: Path | None = None) -> Path:
    return Path(directory or settings.DELETION_RECEIPTS_DIR) / f"deletion-{job_id}.json"


def receipt_write_file(*, job_id: int) -> Path | None:
    """Write the ended job's receipt to DELETION_RECEIPTS_DIR, atomically.

    Called once the job's ending has committed. A receipt that cannot be
    written (a full disk, a missing permission, the database gone) is logged
    and never raises: the job has ended either way, and the caller must not
    take a failure here for a failure of the job. The receipt is still in
    the database and on its page, and verify_deletion reports the missing file.
    """
    target = receipt_path(job_id)
    try:
        job = DeletionJob.objects.filter(pk=job_id).first()
        if job is None or job.is_active:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for chunk in receipt_chunks(job):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)
        DeletionJob.objects.filter(pk=job.pk).update(receipt_written_at=timezone.now())
    except Exception:
        logger.exception("Deletion job %s: could not write its receipt to %s", job_id, target)
        return None
    logger.info("Deletion job %s: receipt written to %s", job_id, target)
    return target


def receipts_write_missing(*, limit: int = 20) -> list[int]:
    """Write the files of ended jobs whose worker stopped (a deploy, a crash)
    between the job's ending and its file; the watchdog calls this. A job
    resumed and ended again is written again (its file is older than its end).
    A job that ended less than DELETION_STALE_AFTER_SECONDS ago is left to
    its worker, which may be writing it now.
    """
    settled = timezone.now() - timedelta(seconds=settings.DELETION_STALE_AFTER_SECONDS)
    ended = (
        DeletionJob.objects.exclude(status__in=DeletionJob.ACTIVE_STATUSES)
        .filter(finished_at__lt=settled)
        .filter(Q(receipt_written_at__isnull=True) | Q(receipt_written_at__lt=F("finished_at")))
        .order_by("finished_at")
        .values_list("pk", flat=True)[:limit]
    )
    return [job_id for job_id in list(ended) if receipt_write_file(job_id=job_id)]


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ReceiptUnreadable(Exception):
    pass


def receipt_read_file(path: Path) -> tuple[dict, Iterator[tuple[str | None, str | None]]]:
    """The receipt's summary, and an iterator over its profiles' digests.

    A file as this module writes it is read line by line (memory stays flat);
    any other valid receipt JSON (reformatted by a tool) is loaded whole.
    Every digest is checked to be 64 hex digits.
    """
    with path.open(encoding="utf-8") as handle:
        head = []
        for line in handle:
            if line.strip() == PROFILES_OPENING:
                break
            head.append(line)
        else:
            return _read_whole(path)
        first = next((line for line in handle if line.strip()), "")
    try:
        summary = json.loads("".join(head).rstrip().rstrip(",") + "}")
    except ValueError:
        return _read_whole(path)
    if (
        summary.get("format") != FORMAT
        or summary.get("version") != VERSION
        or not (ENTRY_LINE.match(first) or first.strip() == "]")
    ):
        # Not laid out as we write it (reformatted, keys reordered): load it whole.
        return _read_whole(path)
    return summary, _stream_entries(path)


def _stream_entries(path: Path) -> Iterator[tuple[str | None, str | None]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip() == PROFILES_OPENING:
                break
        for number, line in enumerate(handle, start=1):
            plain = ENTRY_LINE.match(line)
            if plain:
                yield plain[1], plain[2]
                continue
            text = line.strip().lstrip(",").strip()
            if text in ("]", "}", ""):
                continue
            try:
                entry = json.loads(text)
            except ValueError:
                raise ReceiptUnreadable(f"{path}: profile line {number} is not JSON.") from None
            yield _checked_entry(entry, path)


def _read_whole(path: Path):
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ReceiptUnreadable(f"{path}: not a JSON file ({exc}).") from None
    if not isinstance(document, dict) or not isinstance(document.get("profiles"), list):
        raise ReceiptUnreadable(f"{path}: not a deletion receipt (no list of profiles).")
    entries = document.pop("profiles")
    _check_summary(document, path)
    return document, (_checked_entry(entry, path) for entry in entries)


def _check_summary(summary: dict, path: Path) -> None:
    if summary.get("format") != FORMAT or summary.get("version") != VERSION:
        raise ReceiptUnreadable(f"{path}: not a version {VERSION} deletion receipt.")


def _checked_entry(entry, path: Path) -> tuple[str | None, str | None]:
    if not isinstance(entry, list) or len(entry) != 2:
        raise ReceiptUnreadable(f"{path}: a profile entry is not a pair of digests.")
    for digest in entry:
        if digest is not None and not (isinstance(digest, str) and DIGEST.match(digest)):
            raise ReceiptUnreadable(f"{path}: a profile entry holds something other than a digest.")
    return entry[0], entry[1]


def receipt_files(directory: Path | None = None) -> list[Path]:
    directory = Path(directory or settings.DELETION_RECEIPTS_DIR)
    if not directory.is_dir():
        return []
    return sorted(directory.glob(FILE_PATTERN), key=_job_number)


def _job_number(path: Path):
    match = re.search(r"(\d+)", path.stem)
    return (int(match[1]) if match else 0, path.name)
