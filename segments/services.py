"""Writes for segments: define them, and refresh their membership.

Refresh state lives on the segment. ``refresh_requested_at`` is set by a
request and cleared by the refresh that served it; a refresh clears it only if
it still holds the value the refresh read together with the rules, so a
request (or a rule edit) that lands while a refresh runs is never lost: the
task's loop, or the request's own task, refreshes again.
"""

import logging
import time

from django.db import DatabaseError, connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task
from psycopg import errors as pg_errors

from segments.models import DeletionJob, RetentionSchedule, Segment, SegmentMembership
from segments.names import segment_name_normalize
from segments.rules import RulesError, rules_matching_profiles

logger = logging.getLogger(__name__)

# pg_try_advisory_xact_lock(key1, key2): our namespace, then the segment id.
# (The deletion jobs use 0x5E6D.)
REFRESH_LOCK_NAMESPACE = 0x5E6E
# A task serves the requests that arrive while it refreshes, up to this many rounds.
MAX_ROUNDS = 5


class SegmentRefreshInProgress(Exception):
    """Another refresh of this segment holds the lock; this one did nothing."""


class SegmentBusy(Exception):
    """The segment cannot be deleted right now; the message says why."""


def segment_create(*, name: str, description: str, rules: dict, user) -> Segment:
    segment = Segment.objects.create(
        name=segment_name_normalize(name), description=description, rules=rules, created_by=user
    )
    segment_request_refresh(segment=segment)
    return segment


def segment_update(
    *, segment: Segment, name: str, description: str, rules: dict, user=None
) -> Segment:
    """Save the definition; new rules make the membership out of date, so
    they also request a refresh, and pause the segment's retention schedule."""
    saved_rules = Segment.objects.filter(pk=segment.pk).values_list("rules", flat=True).get()
    name = segment_name_normalize(name)
    segment.name, segment.description, segment.rules = name, description, rules
    segment.save(update_fields=["name", "description", "rules", "updated_at"])
    if rules != saved_rules:
        segment_request_refresh(segment=segment)
        RetentionSchedule.pause_for_rule_edit(
            segment_id=segment.pk, username=user.get_username() if user else ""
        )
    return segment


def segment_delete(*, segment: Segment) -> None:
    """Delete the definition and its membership (the profiles stay).

    Refused while a refresh writes the membership, while a deletion of the
    segment's profiles is under way, and while one stopped part-way and is
    not closed: its progress, its history and its Resume button hang off the
    segment page, and a deletion that is unfinished must stay in view until
    someone resumes it or decides to keep the rest.
    """
    with transaction.atomic():
        if not _try_refresh_lock(segment.pk):
            raise SegmentBusy(f"“{segment.name}” is being refreshed; delete it when that is done.")
        active = DeletionJob.objects.filter(segment=segment, status__in=DeletionJob.ACTIVE_STATUSES)
        if active.exists():
            raise SegmentBusy(
                f"Profiles of “{segment.name}” are being deleted; "
                "delete the segment when that has finished."
            )
        unfinished = DeletionJob.objects.unfinished().filter(segment=segment).first()
        if unfinished:
            raise SegmentBusy(
                f"A deletion of the profiles in “{segment.name}” stopped before it finished: "
                f"{unfinished.remaining:,} of the profiles it was confirmed for are still here. "
                "On the segment page, resume it to delete them, or close it to keep them; "
                "then you can delete the segment."
            )
        segment.delete()


def segment_request_refresh(*, segment: Segment) -> None:
    """Ask for a refresh: the page shows "Refreshing…" until one has run."""
    now = timezone.now()
    Segment.objects.filter(pk=segment.pk).update(refresh_requested_at=now, refresh_error="")
    segment.refresh_requested_at, segment.refresh_error = now, ""
    segment_id = segment.pk
    transaction.on_commit(lambda: async_task("segments.tasks.refresh_segment", segment_id))


def segment_refresh(*, segment: Segment, statement_timeout: float | None = None) -> int:
    """Recompute the membership from the rules, now; return the member count.

    One short-lived transaction, in which one statement rewrites the
    membership: the rules compile to one query over the profiles, the members
    who no longer match are deleted and the new ones inserted, set-based, in
    SQL. Locks, and why ingestion never waits:

    - an advisory lock on (namespace, segment id) keeps two refreshes of one
      segment apart; the second is refused at once (SegmentRefreshInProgress);
    - profiles, events and preferences are only read (ACCESS SHARE), which no
      INSERT or UPDATE waits for;
    - joiners are locked FOR KEY SHARE, which the membership's foreign key
      check takes anyway. It blocks only deleting a profile or changing its
      id, never inserting its events or updating its attributes; profiles that
      a deletion holds are skipped (SKIP LOCKED) instead of waited for;
    - the segment row is updated at the very end, for a moment.

    ``statement_timeout`` (seconds) cancels a refresh that runs too long, so
    a task can record the failure before its worker is killed.
    """
    started = time.monotonic()
    seen = None
    try:
        with transaction.atomic():
            as_of, seen, rules = _lock_and_read(segment, statement_timeout)
            left, joined = _rewrite_membership(segment.pk, rules, as_of)
            # Lock the row before counting: a deletion that ends now and
            # recounts this segment (segment_recount) then counts before us or
            # after our commit, never in between, where our count would be old.
            list(Segment.objects.select_for_update(no_key=True).filter(pk=segment.pk).values("pk"))
            count = SegmentMembership.objects.filter(segment_id=segment.pk).count()
            Segment.objects.filter(pk=segment.pk).update(
                member_count=count, last_refreshed_at=as_of, refresh_error=""
            )
            _clear_request(segment.pk, seen)
    except (SegmentRefreshInProgress, Segment.DoesNotExist):
        raise
    except Exception as error:
        # Any failure is recorded, or the page would say "Refreshing…" forever.
        message = _failure_message(error, statement_timeout)
        if isinstance(error, RulesError | DatabaseError):
            logger.warning("refresh of segment %s failed: %s", segment.pk, message)
        else:
            logger.exception("refresh of segment %s failed", segment.pk)
        Segment.objects.filter(pk=segment.pk).update(refresh_error=message)
        _clear_request(segment.pk, seen)
        segment.refresh_from_db(fields=["refresh_error", "refresh_requested_at"])
        raise
    segment.member_count, segment.last_refreshed_at, segment.refresh_error = count, as_of, ""
    segment.refresh_from_db(fields=["refresh_requested_at"])
    logger.info(
        "refreshed segment %s: %d members (%d joined, %d left) in %.2fs",
        segment.pk,
        count,
        joined,
        left,
        time.monotonic() - started,
    )
    return count


def segment_refresh_requested(*, segment_id: int, statement_timeout: float | None = None):
    """Refresh while a request is waiting: what the refresh task does.

    A task refused because another refresh holds the lock stops at once: the
    holder looks for waiting requests after it commits, and this task's
    request was saved before the refusal, so the holder will see it.
    """
    for _ in range(MAX_ROUNDS):
        segment = Segment.objects.filter(pk=segment_id).first()
        if segment is None or segment.refresh_requested_at is None:
            return
        try:
            segment_refresh(segment=segment, statement_timeout=statement_timeout)
        except (SegmentRefreshInProgress, Segment.DoesNotExist):
            return
        except Exception:
            return  # recorded on the segment for the page to show


def segment_lock_for_confirmation(*, segment_id: int) -> Segment | None:
    """Lock the segment's row FOR SHARE until the end of the current
    transaction and return it as it is now (None if it is gone).

    A refresh rewrites the membership and then, last, updates this row
    (count, ``last_refreshed_at``) in the same transaction. So while the row
    is held, no refresh can commit, and what a caller reads of the membership
    after this is the membership the returned row describes. Shared, so two
    confirmations never wait for each other; a refresh waits a moment.
    """
    table = Segment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR SHARE", [segment_id])  # noqa: S608
        if cursor.fetchone() is None:
            return None
    # A new statement, so it sees the row as the lock found it.
    return Segment.objects.filter(pk=segment_id).first()


def segment_recount(*, segment_ids) -> None:
    """Store the true member count of these segments (after profiles left
    them by other means than a refresh).

    The rows are locked first, then counted in a later statement: a refresh
    that updated one of them meanwhile has committed by then, and its
    membership is what gets counted.
    """
    ids = sorted(set(segment_ids))
    if not ids:
        return
    list(Segment.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))
    members = (
        SegmentMembership.objects.filter(segment_id=OuterRef("pk"))
        .order_by()
        .values("segment_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    Segment.objects.filter(pk__in=ids).update(member_count=Coalesce(Subquery(members), 0))


def _try_refresh_lock(segment_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)",
            [REFRESH_LOCK_NAMESPACE, segment_id % 2_147_483_648],
        )
        return cursor.fetchone()[0]


def _lock_and_read(segment: Segment, statement_timeout):
    """Take the lock, then read the rules and the pending request in one
    snapshot, so the request we clear is one whose rules we used."""
    if not _try_refresh_lock(segment.pk):
        raise SegmentRefreshInProgress(
            f"“{segment.name}” is already being refreshed; its count will update when that "
            "refresh finishes."
        )
    if statement_timeout:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                [f"{int(statement_timeout * 1000)}ms"],
            )
    as_of = timezone.now()
    seen, rules = (
        Segment.objects.filter(pk=segment.pk).values_list("refresh_requested_at", "rules").get()
    )
    return as_of, seen, rules


# The member query is compiled by the ORM from the rules, with every user
# value as a parameter; only our own table names are spliced in here.
#
# The difference between the old and the new membership is taken with EXCEPT
# and applied through "= ANY(array)", which PostgreSQL runs as index probes or
# a hashed scan: linear whatever the planner believes. A join against the
# membership would depend on its statistics, which are at their most stale
# right after a refresh, and one nested loop over a misestimated side turns a
# refresh quadratic.
_REFRESH_SQL = """
WITH matching AS MATERIALIZED ({members}),
current AS MATERIALIZED (
    SELECT profile_id AS id FROM {membership} WHERE segment_id = %s
),
leaving AS (SELECT id FROM current EXCEPT SELECT id FROM matching),
joining AS (SELECT id FROM matching EXCEPT SELECT id FROM current),
leavers AS (
    DELETE FROM {membership}
    WHERE segment_id = %s AND profile_id = ANY (ARRAY (SELECT id FROM leaving))
    RETURNING 1
),
joiners AS (
    INSERT INTO {membership} (segment_id, profile_id, joined_at)
    SELECT %s, p.id, %s
    FROM {profile} p
    WHERE p.id = ANY (ARRAY (SELECT id FROM joining))
    FOR KEY SHARE OF p SKIP LOCKED
    ON CONFLICT (segment_id, profile_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM leavers), (SELECT count(*) FROM joiners)
"""


def _rewrite_membership(segment_id: int, rules, as_of) -> tuple[int, int]:
    members_sql, members_params = rules_matching_profiles(rules, now=as_of).query.sql_with_params()
    sql = _REFRESH_SQL.format(
        members=members_sql,
        membership=SegmentMembership._meta.db_table,
        profile=SegmentMembership.profile.field.related_model._meta.db_table,
    )
    params = [*members_params, segment_id, segment_id, segment_id, as_of]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        left, joined = cursor.fetchone()
    return left, joined


def _clear_request(segment_id: int, seen) -> None:
    if seen is not None:
        Segment.objects.filter(pk=segment_id, refresh_requested_at=seen).update(
            refresh_requested_at=None
        )


def _failure_message(error: Exception, statement_timeout) -> str:
    if isinstance(error, RulesError):
        return f"The rules are not valid: {error}"
    if not isinstance(error, DatabaseError):
        return (
            "Something went wrong on our side (the details are in the server log). "
            "The previous membership is unchanged; try again."
        )
    if isinstance(error.__cause__, pg_errors.QueryCanceled) and statement_timeout:
        return (
            f"The refresh took longer than {statement_timeout:.0f} seconds and was stopped. "
            "The previous membership is unchanged."
        )
    # The database's own words, first line only (later lines can quote SQL).
    reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
    return (
        f"The database could not run it ({reason}). "
        "The previous membership is unchanged; try again."
    )
