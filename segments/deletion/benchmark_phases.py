"""Where a batch of our job spends its time, statement by statement.

The job runs in this process, unchanged (``deletion_run``), while Django's
``execute_wrapper`` times every statement it sends and a wrapper on the
connection's commit times each commit. Statements are sorted into phases
by their text; a batch starts at its first statement (the cancel check,
since issue 15 the statement that reads the job, its cancel flag and ids). What is left of a batch's
wall time once its statements and commit are taken out is Python (Django's
ORM, building the statements, the loop).

Round trips on this machine are priced by timing ``SELECT 1``: the part of
each statement that is the trip itself, not the work.
"""

import statistics
import time
from collections import defaultdict

from django.db import connections

# (phase, test on the statement's text without quotes), first match wins.
PHASES = (
    # Since issue 15: one statement reads the job (locked), the cancel flag
    # and the batch's ids, and one writes the cursor, counters and batch log.
    (
        "batch start (job row, cancel, ids)",
        lambda s: "set_config('lock_timeout'" in s and "FROM segments_deletionjob " in s,
    ),
    (
        "job cursor+counters+batch log",
        lambda s: s.startswith("WITH logged AS") and "UPDATE segments_deletionjob" in s,
    ),
    # Since issue 15 a batch's erasure is one call of a function generated
    # from erasure_plan() (SET CONSTRAINTS and the admin log checks inside).
    ("batch: one call", lambda s: s.startswith("SELECT * FROM pg_temp.vero_batch_")),
    ("create the batch function", lambda s: "FUNCTION pg_temp.vero_batch_" in s),
    ("erase: the plan in one call", lambda s: s.startswith("SELECT * FROM pg_temp.vero_erase_")),
    ("create the erasure function", lambda s: "FUNCTION pg_temp.vero_erase_" in s),
    # The receipt's digests (issue 13): work the floors do not do.
    ("receipt digests", lambda s: "INSERT INTO segments_deletionreceiptbatch" in s),
    ("cancel check", lambda s: "segments_deletionjob" in s and "cancel_requested" in s),
    ("lock_timeout", lambda s: "set_config('lock_timeout'" in s),
    ("job row lock", lambda s: "FROM segments_deletionjob " in s and "FOR UPDATE" in s),
    ("id fetch", lambda s: "FROM segments_deletionjobprofile" in s),
    ("lock profiles (SKIP LOCKED)", lambda s: "SKIP LOCKED" in s),
    ("segments touched", lambda s: "SELECT DISTINCT segment_id" in s),
    ("set constraints", lambda s: s.startswith("SET CONSTRAINTS")),
    ("lock profiles again (erasure)", lambda s: "FROM profiles_profile" in s and "FOR UPDATE" in s),
    ("admin log check", lambda s: "JOIN unnest(" in s),
    ("erase: admin log", lambda s: s.startswith("UPDATE django_admin_log")),
    ("erase: activity", lambda s: s.startswith("UPDATE messaging_messageactivity")),
    ("erase: messages", lambda s: s.startswith("UPDATE messaging_message ")),
    ("erase: events", lambda s: s.startswith("DELETE FROM profiles_event")),
    ("erase: preferences", lambda s: s.startswith("DELETE FROM profiles_subscriptionpreference")),
    ("erase: memberships", lambda s: "DELETE FROM segments_segmentmembership" in s),
    ("erase: profiles", lambda s: s.startswith("DELETE FROM profiles_profile")),
    ("job cursor+counters", lambda s: s.startswith("UPDATE segments_deletionjob SET cursor")),
    ("batch log insert", lambda s: s.startswith("INSERT INTO segments_deletionbatch")),
    ("longest batch update", lambda s: "longest_batch_ms" in s and s.startswith("UPDATE")),
)
BATCH_STARTS = ("cancel check", "batch start (job row, cancel, ids)", "batch: one call")
ERASE = tuple(name for name, _ in PHASES if name.startswith("erase: "))
LOCKING = ("lock profiles (SKIP LOCKED)", "lock profiles again (erasure)", "set constraints")
BOOKKEEPING = (
    "batch start (job row, cancel, ids)",
    "job cursor+counters+batch log",
    "cancel check",
    "lock_timeout",
    "job row lock",
    "id fetch",
    "segments touched",
    "admin log check",
    "job cursor+counters",
    "batch log insert",
    "longest batch update",
)


def classify(sql: str) -> str:
    text = " ".join(sql.replace('"', "").split())
    for name, test in PHASES:
        if test(text):
            return name
    return "other"


class Clock:
    """Records (phase, start, seconds) for every statement and commit."""

    def __init__(self):
        self.records = []

    def __call__(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.records.append((classify(sql), t0, time.perf_counter() - t0))


def round_trip_ms(samples=200) -> float:
    """Median wall time of ``SELECT 1`` through Django: one round trip."""
    times = []
    with connections["default"].cursor() as cursor:
        for _ in range(samples):
            t0 = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def profile_job(job_id: int) -> dict:
    """Run the job here with every statement timed; figures per batch phase."""
    from segments.deletion.services import deletion_run

    conn = connections["default"]
    conn.ensure_connection()
    clock = Clock()
    original_commit = conn._commit

    def timed_commit():
        t0 = time.perf_counter()
        try:
            return original_commit()
        finally:
            clock.records.append(("commit", t0, time.perf_counter() - t0))

    conn._commit = timed_commit
    started = time.perf_counter()
    try:
        with conn.execute_wrapper(clock):
            outcome = deletion_run(job_id=job_id, slice_seconds=3600)
    finally:
        del conn._commit
    total = time.perf_counter() - started
    return summarize(clock.records, total=total, outcome=outcome)


def summarize(records, *, total: float, outcome: str) -> dict:
    """Split the records into batches (each starts at a cancel check or a
    batch start); the last "batch" is the empty one that ends the job, with
    the job's end."""
    starts = [i for i, (phase, _, _) in enumerate(records) if phase in BATCH_STARTS]
    batches = []
    for k, begin in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(records)
        part = records[begin:end]
        wall_end = records[end][1] if end < len(records) else part[-1][1] + part[-1][2]
        batches.append((part, wall_end - part[0][1]))
    full = [
        (part, wall)
        for part, wall in batches
        if any(
            p in ("erase: profiles", "erase: the plan in one call", "batch: one call")
            for p, _, _ in part
        )
    ]
    per_phase = defaultdict(list)
    round_trips, walls = [], []
    for part, wall in full:
        sums = defaultdict(float)
        for phase, _, seconds in part:
            sums[phase] += seconds
        for phase, seconds in sums.items():
            per_phase[phase].append(seconds * 1000)
        per_phase["python (not in a statement)"].append((wall - sum(sums.values())) * 1000)
        round_trips.append(sum(1 for phase, _, _ in part if phase != "commit"))
        walls.append(wall * 1000)
    n = len(full) or 1
    phases = {
        phase: round(sum(values) / n, 2)
        for phase, values in sorted(per_phase.items(), key=lambda kv: -sum(kv[1]))
    }
    start_of_end = batches[-1][0][0][1] if batches else 0
    end_of_job = [r for r in records if r[1] >= start_of_end]
    return {
        "outcome": outcome,
        "seconds": round(total, 3),
        "batches": len(full),
        "mean_batch_ms": round(statistics.mean(walls), 2) if walls else None,
        "round_trips_per_batch": round(statistics.mean(round_trips), 1) if round_trips else None,
        "phase_ms_per_batch": phases,
        "erase_ms_per_batch": round(sum(phases.get(p, 0) for p in ERASE), 2),
        "locking_ms_per_batch": round(sum(phases.get(p, 0) for p in LOCKING), 2),
        "bookkeeping_ms_per_batch": round(sum(phases.get(p, 0) for p in BOOKKEEPING), 2),
        "end_of_job_ms": round(sum(s for _, _, s in end_of_job) * 1000, 1),
    }
