"""A batch of a deletion job as one call of a server-side function.

A batch is the same five steps it always was (read the job and the next
snapshot ids, lock the profiles, record the receipt, erase, write the
cursor, counters and log), but they run inside the database, in one call of
a PL/pgSQL function, so the batch's ids never travel to the worker and back
three times, and the batch costs one round trip and one commit.

Each step's SQL is written once, here and in the modules that own it, as a
template with ``%(name)s`` placeholders: the worker's statements fill them
with psycopg parameters (the path for set-aside profiles, below), the
function with its variables. The erasure itself is the function
:func:`profiles.erasure.erasure_function_sql` builds from ``erasure_plan()``,
called from this one; the receipt is :func:`receipt_capture_sql`.

The function lives in the session's temporary schema, created once per
connection; its name is a digest of its text, so a changed plan, receipt or
template is a new function. It handles the batches of fresh snapshot ids.
Once the cursor has reached the end of the snapshot (or range) it changes
nothing and says so, and the worker retries the set-aside profiles with
separate statements, as before: that happens at most a few times a job.
"""

import hashlib
from typing import NamedTuple

from django.db import connection

from profiles.erasure import erasure_function_ensure, session_function_ensure
from profiles.models import Profile
from segments.deletion.receipts import receipt_capture_sql
from segments.models import (
    DeletionBatch,
    DeletionJob,
    DeletionJobProfile,
    DeletionRunner,
    SegmentMembership,
)

# The segment memberships a batch deletes tell which segments lost members.
MEMBERSHIPS = SegmentMembership._meta.label_lower
MEMBER_SEGMENTS = {MEMBERSHIPS: SegmentMembership._meta.get_field("segment").column}
# The job's counters, and the erasure step (model label) each one adds up.
COUNTED_STEPS = {
    "events": "profiles.event",
    "preferences": "profiles.subscriptionpreference",
    "memberships": MEMBERSHIPS,
    "messages": "messaging.message",
    "activity": "messaging.messageactivity",
}

_qn = connection.ops.quote_name
_JOBS = DeletionJob._meta.db_table
_RUNNERS = DeletionRunner._meta.db_table
_SNAPSHOT = DeletionJobProfile._meta.db_table
_PROFILES = Profile._meta.db_table
_BATCHES = DeletionBatch._meta.db_table

# --- The steps, as templates ---------------------------------------------------
#
# {into} is empty for the worker's statements and "INTO <variables>" in the
# function; every %(name)s is a parameter, or a variable of the function.

# Set the batch's lock timeout, lock the job row, read the cancel flag, the
# cursor and what is set aside, and fetch the next snapshot ids. Never queue
# behind someone else's row lock while holding a batch of ours: fail fast,
# and the worker retries smaller. (Set first: the select list is computed
# before the row lock is taken.)
JOB_START = f"""
    SELECT set_config('lock_timeout', %(timeout)s, true), j.cancel_requested, j.suppress,
           j.{_qn("cursor")}, j.deferred_profile_ids, j.touched_segment_ids,
           ARRAY(SELECT s.profile_id FROM {_SNAPSHOT} s
                 WHERE s.job_id = j.id AND s.profile_id > j.{_qn("cursor")}
                 ORDER BY s.profile_id LIMIT %(size)s)
    {{into}}
    FROM {_JOBS} j WHERE j.id = %(job)s FOR UPDATE OF j
"""  # noqa: S608 (table names from model metadata)

# The same for a parallel runner: its own row is locked, and its cursor,
# set-aside ids and range are read from it. The job's row is read, not
# locked (the runners would queue behind each other): a job cancelled or
# ended reads as cancelled. (Its touched segments are merged into the job's
# when the batch is recorded, so none are read here.)
RUNNER_START = f"""
    SELECT set_config('lock_timeout', %(timeout)s, true),
           j.cancel_requested OR NOT j.status = ANY(%(active)s), j.suppress,
           r.{_qn("cursor")}, r.deferred_profile_ids, '{{{{}}}}'::bigint[],
           ARRAY(SELECT s.profile_id FROM {_SNAPSHOT} s
                 WHERE s.job_id = r.job_id AND s.profile_id > r.{_qn("cursor")}
                   AND s.profile_id <= r.high
                 ORDER BY s.profile_id LIMIT %(size)s)
    {{into}}
    FROM {_RUNNERS} r
    JOIN {_JOBS} j ON j.id = r.job_id
    WHERE r.job_id = %(job)s AND r.number = %(runner)s FOR UPDATE OF r
"""  # noqa: S608 (table names from model metadata)

# Lock the batch's profiles that nobody else holds, in id order.
LOCK_FREE = f"""
    SELECT coalesce(array_agg(id ORDER BY id), '{{{{}}}}') {{into}} FROM (
        SELECT id FROM {_PROFILES} WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE SKIP LOCKED
    ) free
"""  # noqa: S608
# Of the others, those that exist: someone else holds them.
HELD = f"""
    SELECT coalesce(array_agg(id ORDER BY id), '{{{{}}}}') {{into}} FROM {_PROFILES}
    WHERE id = ANY(%(ids)s) AND NOT id = ANY(%(locked)s)
"""  # noqa: S608

# A batch's counters, added to the job's row (one runner or several).
_JOB_COUNTERS = """
        deleted = deleted + %(deleted)s,
        skipped = skipped + %(skipped)s,
        events_deleted = events_deleted + %(events)s,
        preferences_deleted = preferences_deleted + %(preferences)s,
        memberships_deleted = memberships_deleted + %(memberships)s,
        messages_anonymized = messages_anonymized + %(messages)s,
        activity_anonymized = activity_anonymized + %(activity)s,
        batches = batches + 1,
        longest_batch_ms = CASE WHEN %(profiles)s > 0
            THEN GREATEST(longest_batch_ms, %(ms)s) ELSE longest_batch_ms END,
        heartbeat_at = %(now)s,
        last_progress_at = %(now)s,
        -- Waiting, if any, starts again when only held profiles are left.
        waiting_for = '',
        waiting_since = NULL,
        -- Attempts count interruptions without progress; this is progress.
        attempts = 0"""

_LOG_BATCH = f"""
    WITH logged AS (
        INSERT INTO {_BATCHES} (job_id, profiles, duration_ms, finished_at)
        SELECT %(job)s, %(profiles)s, %(ms)s, %(now)s WHERE %(profiles)s > 0
    )"""

# The job's cursor, set-aside ids and counters, and the batch's log row.
JOB_RECORD = f"""{_LOG_BATCH}
    UPDATE {_JOBS} SET
        "cursor" = %(cursor)s,
        deferred_profile_ids = %(deferred)s::bigint[],
        touched_segment_ids = %(touched)s::bigint[],{_JOB_COUNTERS}
    WHERE id = %(job)s
"""  # noqa: S608

# A runner's: its own cursor and set-aside ids; the job's set-aside ids stay
# the union of its runners' (%(was_deferred)s is what this runner had set
# aside before the batch), its touched segments the union of theirs. Only
# while the job is active: otherwise no row comes back, and the batch rolls
# back (JobEnded).
RUNNER_RECORD = f"""{_LOG_BATCH}, runner AS (
        UPDATE {_RUNNERS} SET
            "cursor" = %(cursor)s,
            deferred_profile_ids = %(deferred)s::bigint[],
            handled = handled + %(handled)s,
            batches = batches + 1
        WHERE job_id = %(job)s AND number = %(runner)s
    )
    UPDATE {_JOBS} SET
        deferred_profile_ids = ARRAY(
            SELECT id FROM unnest(deferred_profile_ids) id
            WHERE NOT id = ANY(%(was_deferred)s::bigint[])
            UNION SELECT unnest(%(deferred)s::bigint[]) ORDER BY 1),
        touched_segment_ids = ARRAY(
            SELECT unnest(touched_segment_ids)
            UNION SELECT unnest(%(touched)s::bigint[]) ORDER BY 1),{_JOB_COUNTERS}
    WHERE id = %(job)s AND status = ANY(%(active)s)
    RETURNING id {{into}}
"""  # noqa: S608


def active_statuses() -> list[str]:
    return [str(status) for status in DeletionJob.ACTIVE_STATUSES]


# --- The function ------------------------------------------------------------------


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _array_literal(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(_literal(v) for v in values) + "]::text[]"


# The function's variables, by template parameter.
_VARIABLES = {
    "timeout": "p_lock_timeout",
    "size": "p_size",
    "job": "p_job",
    "runner": "p_runner",
    "ids": "v_ids",
    "locked": "v_locked",
    "cursor": "v_ids[cardinality(v_ids)]",
    "deferred": "v_waiting",
    "was_deferred": "v_deferred",
    "touched": "v_touched",
    "deleted": "c_deleted",
    "skipped": "v_skipped",
    "handled": "(c_deleted + v_skipped)",
    "profiles": "cardinality(v_locked)",
    "ms": "v_ms",
    "now": "v_now",
    **{counter: f"c_{counter}" for counter in COUNTED_STEPS},
}


def _in_function(template: str, into: str = "") -> str:
    variables = {**_VARIABLES, "active": _array_literal(active_statuses())}
    return template.format(into=into) % variables


def _returning(outcome: str) -> str:
    """Return one row: the outcome's columns, none of the retry's."""
    return (
        f"RETURN QUERY SELECT {outcome}, "
        "NULL::bigint, NULL::bigint[], NULL::bigint[], NULL::boolean; RETURN;"
    )


def batch_function_sql(erase_name: str) -> tuple[str, str]:
    """(name, ``CREATE FUNCTION`` statement) of the batch function, which
    calls the erasure function ``erase_name`` (created beforehand).

    ``p_runner`` is NULL for a job's single runner; ``p_now`` is the
    worker's clock as it calls (the heartbeat and the batch log's time are
    that plus the batch's duration). It returns one row:
    ``found`` (false: no such job or runner), ``cancelled`` (nothing done),
    ``fresh`` (false: no snapshot ids were left after the cursor; nothing
    done, and the job's cursor, set-aside ids, touched segments and
    suppress flag come back for the worker's retry of the set-aside
    profiles), ``handled`` (snapshot ids dealt with), ``waiting`` (profiles
    set aside), ``ended`` (a runner's job has ended: roll back).
    """
    counting = "\n".join(
        f"      WHEN {_literal(label)} THEN c_{counter} := c_{counter} + step.erased_rows;"
        for counter, label in COUNTED_STEPS.items()
    )
    receipt = {
        suppress: receipt_capture_sql(ids="v_locked", job="p_job", suppress=suppress, into="n")
        for suppress in (False, True)
    }
    into = "INTO v_set, v_cancel, v_suppress, v_cursor, v_deferred, v_touched, v_ids"
    body = f"""
DECLARE
  t0 timestamptz := clock_timestamp();
  v_set text; v_cancel boolean; v_suppress boolean; v_cursor bigint;
  v_deferred bigint[]; v_touched bigint[]; v_ids bigint[];
  v_locked bigint[]; v_held bigint[] := '{{}}'; v_waiting bigint[];
  v_skipped int; v_ms int; v_now timestamptz; v_job bigint; n bigint; step record;
  c_deleted bigint := 0;
  {" ".join(f"c_{counter} bigint := 0;" for counter in COUNTED_STEPS)}
BEGIN
  IF p_runner IS NULL THEN
    {_in_function(JOB_START, into)};
  ELSE
    {_in_function(RUNNER_START, into)};
  END IF;
  IF NOT FOUND THEN
    {_returning("false, false, false, 0, 0, false")}
  END IF;
  v_deferred := coalesce(v_deferred, '{{}}');
  v_touched := coalesce(v_touched, '{{}}');
  IF v_cancel OR cardinality(v_ids) = 0 THEN
    RETURN QUERY SELECT true, v_cancel, false, 0, cardinality(v_deferred), false,
                        v_cursor, v_deferred, v_touched, v_suppress;
    RETURN;
  END IF;
  {_in_function(LOCK_FREE, "INTO v_locked")};
  IF cardinality(v_locked) < cardinality(v_ids) THEN
    {_in_function(HELD, "INTO v_held")};
  END IF;
  v_waiting := v_deferred || v_held;
  v_skipped := cardinality(v_ids) - cardinality(v_locked) - cardinality(v_held);
  IF cardinality(v_locked) > 0 THEN
    IF v_suppress THEN
      {receipt[True]};
    ELSE
      {receipt[False]};
    END IF;
    FOR step IN SELECT * FROM pg_temp.{erase_name}(v_locked) LOOP
      CASE step.erased_label
      WHEN {_literal(Profile._meta.label_lower)} THEN c_deleted := step.erased_rows;
{counting}
      ELSE NULL;
      END CASE;
      IF step.erased_label = {_literal(MEMBERSHIPS)} THEN
        v_touched := ARRAY(
          SELECT unnest(v_touched) UNION SELECT unnest(step.erased_values) ORDER BY 1);
      END IF;
    END LOOP;
  END IF;
  -- The batch's time up to its record (never below 0, should the clock
  -- step back), and the worker's clock at that moment for its heartbeat.
  v_ms := greatest(0, (extract(epoch FROM clock_timestamp() - t0) * 1000)::int);
  v_now := p_now + (clock_timestamp() - t0);
  IF p_runner IS NULL THEN
    {_in_function(JOB_RECORD)};
  ELSE
    {_in_function(RUNNER_RECORD, "INTO v_job")};
    IF v_job IS NULL THEN
      {_returning("true, false, true, 0, 0, true")}
    END IF;
  END IF;
  {_returning("true, false, true, cardinality(v_ids), cardinality(v_waiting), false")}
END
"""  # noqa: S608 (identifiers from model metadata, names digests)
    name = "vero_batch_" + hashlib.sha256(body.encode()).hexdigest()[:16]
    create = (
        f"CREATE OR REPLACE FUNCTION pg_temp.{name}(p_job bigint, p_runner int, p_size int, "
        "p_lock_timeout text, p_now timestamptz) "
        "RETURNS TABLE (o_found boolean, o_cancelled boolean, o_fresh boolean, o_handled int, "
        "o_waiting int, o_ended boolean, o_cursor bigint, o_deferred bigint[], "
        "o_touched bigint[], o_suppress boolean) "
        f"LANGUAGE plpgsql AS $batch${body}$batch$"
    )
    return name, create


class BatchCall(NamedTuple):
    found: bool
    cancelled: bool
    fresh: bool  # false: no snapshot ids were left after the cursor
    handled: int
    waiting: int
    ended: bool
    # Only when not fresh: what the retry of the set-aside profiles needs.
    cursor: int | None
    deferred: list[int] | None
    touched: list[int] | None
    suppress: bool | None


def batch_call(
    *, job_id: int, runner: int | None, batch_size: int, lock_timeout: str, now
) -> BatchCall:
    """Run the next batch of fresh snapshot ids in one call, in the caller's
    transaction (see :func:`batch_function_sql`)."""
    with connection.cursor() as cursor:
        erase_name = erasure_function_ensure(cursor, MEMBER_SEGMENTS)
        name, create = batch_function_sql(erase_name)
        session_function_ensure(cursor, name, create)
        cursor.execute(
            f"SELECT * FROM pg_temp.{name}(%s, %s, %s, %s, %s)",  # noqa: S608 (a digest)
            [job_id, runner, batch_size, lock_timeout, now],
        )
        return BatchCall(*cursor.fetchone())
