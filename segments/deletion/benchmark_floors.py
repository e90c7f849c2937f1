"""The floors the deletion benchmark measures ours against.

A floor does the same erasure as our job with nothing of the job around it:
no task, no cursor or counters written back, no batch log. Three of them:

- ``floor_join``: one transaction of ``UPDATE ... FROM`` / ``DELETE ... USING``
  the snapshot, written out by hand (the benchmark's first floor; see
  :func:`segments.deletion.benchmark.run_floor`);
- ``floor_loop``: the statements of ``profiles.erasure.erasure_plan()`` in a
  PL/pgSQL ``DO`` block, over batches of the same sizes our job used, each
  batch locked ``FOR UPDATE`` in id order and committed on its own: our job
  with every round trip and every bookkeeping row taken out;
- ``floor_array``: the same statements once, in one transaction, over the
  array of every snapshot id;
- ``floor_loop_receipt``: the loop, each batch also writing the receipt's
  digests as ours does. Not a floor of the erasure (it does more), so never
  the "best floor"; it is the floor of our exact work, and ours against it
  is what the job's own machinery costs.

The PL/pgSQL is generated from ``erasure_plan()`` (the steps' SQL with the
batch's ids as a variable), so a table added to the erasure is erased by the
floors too, and no statement is written twice.
"""

import json
import time

import psycopg
from psycopg import sql as pgsql

from profiles.erasure import _logged_models, erasure_plan
from profiles.models import Profile
from segments.models import DeletionJobProfile

NOTICE_TAG = "vero-bench "


def erasure_steps(cursor) -> list[tuple[str, str]]:
    """(label, PL/pgSQL statement) for each step a batch runs, over ``ids``.

    Admin-log steps whose model the log does not mention are left out, as
    ``profiles_erase`` leaves them out (it asks once per batch; a floor asks
    once per run). The profiles themselves are deleted last, as there.
    """
    plan = erasure_plan()
    logged = _logged_models(cursor, plan)
    steps = []
    for step in plan:
        if step.about is not None and step.about not in logged:
            continue
        values = {"ids": "ids"}
        for key, value in step.params:
            values[key] = "'" + value.replace("'", "''") + "'"
        # The steps are written for psycopg's %-parameters; formatting them
        # with the variable's name turns %(ids)s into ids and %% into %.
        steps.append((step.label, step.sql % values))
    table = Profile._meta.db_table
    steps.append(("profiles.profile", f"DELETE FROM {table} WHERE id = ANY(ids)"))  # noqa: S608
    return steps


def _counted(steps) -> str:
    """The steps, each followed by adding its row count to ``counts`` and
    its time to ``step_ms``."""
    lines = []
    for i, (_, statement) in enumerate(steps, start=1):
        lines.append("    ts := clock_timestamp();")
        lines.append(f"    {statement};")
        lines.append(f"    GET DIAGNOSTICS n = ROW_COUNT; counts[{i}] := counts[{i}] + n;")
        lines.append(
            f"    step_ms[{i}] := step_ms[{i}] + extract(epoch FROM clock_timestamp() - ts) * 1000;"
        )
    return "\n".join(lines)


def _declare(steps) -> str:
    return f"""
  n bigint;
  ts timestamptz;
  counts bigint[] := array_fill(0::bigint, ARRAY[{len(steps)}]);
  step_ms float8[] := array_fill(0::float8, ARRAY[{len(steps)}]);
  lock_ms float8 := 0;"""


def loop_block(*, job_id: int, sizes: list[int], steps, receipt: bool = False) -> str:
    """The in-database batched loop: the job's snapshot in id order, batch i
    of ``sizes[i]`` profiles (the last size for the rest), one COMMIT each.

    With ``receipt``, each batch also records its people's digests on the
    job's receipt (the statement ours runs, ``receipt_capture_sql``) before
    the erasure: the floor of our exact work, the receipt included."""
    from segments.deletion.receipts import receipt_capture_sql

    snapshot = DeletionJobProfile._meta.db_table
    profiles = Profile._meta.db_table
    capture = ""
    if receipt:
        statement = receipt_capture_sql(ids="ids", job=str(int(job_id)), suppress=False, into="n")
        capture = (
            "    ts := clock_timestamp();\n"
            f"    {statement};\n"
            "    receipt_ms := receipt_ms + extract(epoch FROM clock_timestamp() - ts) * 1000;\n"
            "    receipt_n := receipt_n + coalesce(n, 0);"
        )
    size_list = ",".join(str(int(s)) for s in sizes) or "1000"
    return f"""
DO $bench$
DECLARE
  sizes int[] := '{{{size_list}}}';
  batch bigint[];
  ids bigint[];
  last_id bigint := 0;
  i int := 0;{_declare(steps)}
  ms float8[] := '{{}}';
  receipt_ms float8 := 0;
  receipt_n bigint := 0;
  t0 timestamptz;
BEGIN
  LOOP
    i := i + 1;
    t0 := clock_timestamp();
    SELECT array_agg(profile_id ORDER BY profile_id) INTO batch FROM (
      SELECT profile_id FROM {snapshot} WHERE job_id = {int(job_id)} AND profile_id > last_id
      ORDER BY profile_id LIMIT sizes[least(i, cardinality(sizes))]) s;
    EXIT WHEN batch IS NULL;
    last_id := batch[cardinality(batch)];
    SET CONSTRAINTS ALL IMMEDIATE;
    ts := clock_timestamp();
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO ids FROM (
      SELECT id FROM {profiles} WHERE id = ANY(batch) ORDER BY id FOR UPDATE) l;
    lock_ms := lock_ms + extract(epoch FROM clock_timestamp() - ts) * 1000;
{capture}
{_counted(steps)}
    COMMIT;
    ms := ms || (extract(epoch FROM clock_timestamp() - t0) * 1000)::float8;
  END LOOP;
  RAISE NOTICE '{NOTICE_TAG}%', json_build_object(
    'counts', counts, 'step_ms', step_ms, 'lock_ms', lock_ms, 'batch_ms', ms,
    'receipt_ms', receipt_ms, 'receipt_entries', receipt_n);
END
$bench$"""  # noqa: S608 (identifiers from model metadata)


def array_block(*, job_id: int, steps) -> str:
    """One transaction: lock every snapshot profile, then each step once over
    the array of all their ids."""
    snapshot = DeletionJobProfile._meta.db_table
    profiles = Profile._meta.db_table
    return f"""
DO $bench$
DECLARE
  ids bigint[];{_declare(steps)}
BEGIN
  SET CONSTRAINTS ALL IMMEDIATE;
  ts := clock_timestamp();
  SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO ids FROM (
    SELECT id FROM {profiles}
    WHERE id IN (SELECT profile_id FROM {snapshot} WHERE job_id = {int(job_id)})
    ORDER BY id FOR UPDATE) l;
  lock_ms := extract(epoch FROM clock_timestamp() - ts) * 1000;
{_counted(steps)}
  RAISE NOTICE '{NOTICE_TAG}%', json_build_object(
    'counts', counts, 'step_ms', step_ms, 'lock_ms', lock_ms, 'batch_ms', ARRAY[]::float8[]);
END
$bench$"""  # noqa: S608 (identifiers from model metadata)


def run_block(params: dict, block: str) -> tuple[float, dict]:
    """Run a DO block on its own autocommit connection; (seconds, its report)."""
    notices = []
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        t0 = time.perf_counter()
        conn.execute(pgsql.SQL(block))  # generated above from model metadata
        seconds = time.perf_counter() - t0
    report = next(
        (json.loads(m[len(NOTICE_TAG) :]) for m in notices if m.startswith(NOTICE_TAG)), {}
    )
    return seconds, report
