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

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from profiles.models import Profile, Suppression
from segments.models import DeletionJob, DeletionReceiptEntry

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


def receipt_capture(*, job_id: int, profile_ids: list[int], suppress: bool) -> int:
    """Record the digests of these profiles on the job's receipt (and, with
    ``suppress``, on the suppression list), in the caller's transaction.

    Call it with the batch's profiles locked, just before they are erased:
    one set-based statement, whatever the batch size. Ids of profiles that
    no longer exist add nothing, as erasure skips them too.
    """
    if not profile_ids:
        return 0
    qn = connection.ops.quote_name
    profiles = qn(Profile._meta.db_table)
    entries = qn(DeletionReceiptEntry._meta.db_table)
    insert = (
        f"INSERT INTO {entries} (job_id, user_id_sha256, email_sha256) "  # noqa: S608
        f"SELECT %(job)s, {USER_ID_SQL.format(col='user_id')}, {EMAIL_SQL.format(col='email')} "
        f"FROM {profiles} WHERE id = ANY(%(ids)s)"
    )
    params = {"job": job_id, "ids": list(profile_ids)}
    with connection.cursor() as cursor:
        if not suppress:
            cursor.execute(insert, params)
            return cursor.rowcount
        suppressions = qn(Suppression._meta.db_table)
        cursor.execute(
            f"WITH entry AS ({insert} RETURNING user_id_sha256, email_sha256), "  # noqa: S608
            "inserted AS ("
            f"INSERT INTO {suppressions} (kind, digest, job_id, created_at) "
            "SELECT DISTINCT kind, digest, %(job)s, now() FROM entry, LATERAL (VALUES "
            f"('{Suppression.Kind.USER_ID}', user_id_sha256), "
            f"('{Suppression.Kind.EMAIL}', email_sha256)) AS d(kind, digest) "
            "WHERE digest IS NOT NULL ON CONFLICT (digest, kind) DO NOTHING) "
            "SELECT count(*) FROM entry",
            params,
        )
        return cursor.fetchone()[0]


# --- The document --------------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _rules_for_receipt(rules):
    """The rules as confirmed, with a value that names one person (an email
    or user id compared for equality) replaced by its digest: the receipt
    holds no identifier in clear."""
    if isinstance(rules, list):
        return [_rules_for_receipt(item) for item in rules]
    if not isinstance(rules, dict):
        return rules
    out = {key: _rules_for_receipt(value) for key, value in rules.items()}
    field = rules.get("field")
    if (
        rules.get("type") == "property"
        and field in ("email", "user_id")
        and rules.get("operator") in ("equals", "not_equals")
        and isinstance(rules.get("value"), (str, int))
    ):
        kind = Suppression.Kind.EMAIL if field == "email" else Suppression.Kind.USER_ID
        out["value"] = {"sha256": Suppression.digest_of(kind, str(rules["value"]))}
    return out


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
            "rules": _rules_for_receipt(job.rules_at_confirmation),
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
    entries = (
        DeletionReceiptEntry.objects.filter(job_id=job.pk)
        .order_by("pk")
        .values_list("user_id_sha256", "email_sha256")
        .iterator(chunk_size=5000)
    )
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
