"""Redo deletions from their receipt files, after a backup is restored.

A restored backup may predate a deletion, and then holds its people again
(and not the job, nor its receipt rows, nor its suppressions). The receipt
files in DELETION_RECEIPTS_DIR live outside the database; this erases, through
the same erasure as the job (``profiles.erasure``, in batches), every profile
whose user id or email digest is listed in one of them, and puts back the
suppressions of receipts that had "stop them from coming back".

Set-based and flat in memory: the digests are streamed from the files into a
temporary table in chunks, the profiles to erase are found with one join
(hashing each profile's user id and email in SQL, as the receipts did), and
erased in id order, one short transaction per batch. Running it again finds
nobody left to erase and changes nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction

from profiles.erasure import profiles_erase
from profiles.models import Profile, Suppression
from segments.deletion.receipts import EMAIL_SQL, USER_ID_SQL, receipt_read_file
from segments.models import SegmentMembership
from segments.services import segment_recount

LOAD_CHUNK = 10_000
BATCH_SIZE = 1000
DIGESTS, TARGETS = "reapply_digest", "reapply_target"


@dataclass
class ReceiptFound:
    path: Path
    job: int | None
    segment: str
    listed: int = 0
    present: int = 0  # profiles here now with a digest it lists
    suppressed: bool = False


@dataclass
class ReapplyResult:
    receipts: list[ReceiptFound] = field(default_factory=list)
    to_erase: int = 0
    erased: int = 0
    skipped: int = 0
    suppressions_added: int = 0
    dry_run: bool = False


def deletions_reapply(
    *,
    paths: list[Path],
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
) -> ReapplyResult:
    """Erase everyone the receipts at ``paths`` list; with ``dry_run``, only
    say who (how many) and change nothing."""
    say = progress or (lambda message: None)
    result = ReapplyResult(dry_run=dry_run)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {DIGESTS}, {TARGETS}")
        cursor.execute(
            f"CREATE TEMP TABLE {DIGESTS} (source int, kind text, digest text, suppress bool)"
        )
        try:
            for source, path in enumerate(paths):
                result.receipts.append(_load(cursor, source, path))
            cursor.execute(f"CREATE INDEX ON {DIGESTS} (kind, digest)")
            cursor.execute(f"ANALYZE {DIGESTS}")
            _find_targets(cursor, result)
            if dry_run:
                result.suppressions_added = _suppressions_missing(cursor)
                return result
            # Suppress first, so nobody listed is re-created while we erase.
            result.suppressions_added = _suppress(cursor)
            _erase(cursor, result, batch_size, say)
            return result
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {DIGESTS}, {TARGETS}")


def _load(cursor, source: int, path: Path) -> ReceiptFound:
    summary, entries = receipt_read_file(path)
    found = ReceiptFound(
        path=path,
        job=summary.get("job"),
        segment=str((summary.get("segment") or {}).get("name", "")),
        suppressed=bool(summary.get("suppressed")),
    )
    # COPY, in chunks of text: binding 10,000 digests as query parameters
    # costs more in Python than the whole load does in PostgreSQL. The
    # reader has checked every digest to be 64 hex digits.
    suppress = "t" if found.suppressed else "f"
    user_id = f"{source}\t{Suppression.Kind.USER_ID}\t{{}}\t{suppress}\n"
    email = f"{source}\t{Suppression.Kind.EMAIL}\t{{}}\t{suppress}\n"
    with cursor.copy(f"COPY {DIGESTS} (source, kind, digest, suppress) FROM STDIN") as copy:
        lines = []
        for user_id_digest, email_digest in entries:
            found.listed += 1
            if user_id_digest is not None:
                lines.append(user_id.format(user_id_digest))
            if email_digest is not None:
                lines.append(email.format(email_digest))
            if len(lines) >= LOAD_CHUNK:
                copy.write("".join(lines))
                lines = []
        copy.write("".join(lines))
    return found


def _find_targets(cursor, result: ReapplyResult) -> None:
    profiles = connection.ops.quote_name(Profile._meta.db_table)
    user_id = USER_ID_SQL.format(col="p.user_id")
    email = EMAIL_SQL.format(col="p.email")
    cursor.execute(
        f"CREATE TEMP TABLE {TARGETS} AS "  # noqa: S608
        f"SELECT p.id, d.source FROM {profiles} p JOIN {DIGESTS} d "
        f"ON d.kind = '{Suppression.Kind.USER_ID}' AND d.digest = {user_id} "
        "WHERE p.user_id IS NOT NULL "
        f"UNION SELECT p.id, d.source FROM {profiles} p JOIN {DIGESTS} d "
        f"ON d.kind = '{Suppression.Kind.EMAIL}' AND d.digest = {email} "
        "WHERE p.email <> ''"
    )
    cursor.execute(f"CREATE INDEX ON {TARGETS} (id)")
    cursor.execute(f"SELECT source, count(DISTINCT id) FROM {TARGETS} GROUP BY source")  # noqa: S608
    for source, present in cursor.fetchall():
        result.receipts[source].present = present
    cursor.execute(f"SELECT count(DISTINCT id) FROM {TARGETS}")  # noqa: S608
    result.to_erase = cursor.fetchone()[0]


def _suppression_rows_sql() -> str:
    table = connection.ops.quote_name(Suppression._meta.db_table)
    return (
        f"SELECT DISTINCT ON (d.kind, d.digest) d.kind, d.digest FROM {DIGESTS} d "  # noqa: S608
        f"WHERE d.suppress AND NOT EXISTS (SELECT 1 FROM {table} s "
        "WHERE s.digest = d.digest AND s.kind = d.kind)"
    )


def _suppressions_missing(cursor) -> int:
    cursor.execute(f"SELECT count(*) FROM ({_suppression_rows_sql()}) missing")  # noqa: S608
    return cursor.fetchone()[0]


def _suppress(cursor) -> int:
    table = connection.ops.quote_name(Suppression._meta.db_table)
    cursor.execute(
        f"INSERT INTO {table} (kind, digest, job_id, created_at) "  # noqa: S608
        f"SELECT kind, digest, NULL, now() FROM ({_suppression_rows_sql()}) missing "
        "ON CONFLICT (digest, kind) DO NOTHING"
    )
    return cursor.rowcount


def _erase(cursor, result: ReapplyResult, batch_size: int, say) -> None:
    memberships = connection.ops.quote_name(SegmentMembership._meta.db_table)
    touched: set[int] = set()
    last = 0
    while True:
        cursor.execute(
            f"SELECT DISTINCT id FROM {TARGETS} WHERE id > %s ORDER BY id LIMIT %s",  # noqa: S608
            [last, batch_size],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            break
        with transaction.atomic():
            cursor.execute(
                f"SELECT DISTINCT segment_id FROM {memberships} WHERE profile_id = ANY(%s)",  # noqa: S608
                [ids],
            )
            touched.update(row[0] for row in cursor.fetchall())
            erased = profiles_erase(profile_ids=ids)
        result.erased += erased.deleted
        result.skipped += erased.skipped
        last = ids[-1]
        say(f"Erased {result.erased:,} of {result.to_erase:,} profiles.")
    if touched:
        with transaction.atomic():
            segment_recount(segment_ids=touched)
