"""The deletion benchmark: our job against the physical floor and the naive way.

``python manage.py benchmark_deletion`` builds one dataset in a template
database, then measures each contender on an identical copy of it
(``CREATE DATABASE ... TEMPLATE``):

- ours: the job exactly as the UI starts it (``deletion_start``), run by a
  real ``qcluster`` process, while a sampler measures the web pages and the
  ingestion API served by gunicorn, and another samples the worker's memory;
- the floors: the same erasure with nothing of the job around it (see
  ``benchmark_floors``); the loop plus our receipt, our exact work, also
  runs under the same load probe as ours (alternating with it,
  ``probed_rounds`` times), so what any deletion at this speed costs the
  pages and ingestion is told from what our job adds;
- the naive way: the Django ORM's ``delete()`` and ``update()``, as a typical
  app would write it, in a child process whose peak memory is measured.

It then verifies each end state and prints one table. Figures are figures:
nothing here asserts a timing.
"""

import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil
import psycopg
from django.conf import settings
from django.db import connection, connections

from profiles.erasure import profile_tables
from segments.deletion.benchmark_probe import (
    INGEST_EVENT,
    LoadProbe,
    _api_key,
    _probe_requests,
    _probe_users,
    _round,
    _session_cookie,
    percentile,
    production_env,
)

BENCH_SEGMENT = "Benchmark: profiles to delete"
BASE_DIR = Path(settings.BASE_DIR)

# Tables holding a profile's data, and the column that points at the profile.
PROFILE_TABLES = profile_tables()


@dataclass
class BenchConfig:
    profiles: int = 10_000
    events_per_profile: int = 10
    segment_share: float = 0.5
    requests: int = 500
    naive: bool = True
    http: bool = True
    prefix: str = "vero_bench"
    keep: bool = False
    repeat: int = 3
    phases: bool = True
    # DELETION_RUNNERS for each measured run of ours, every round.
    runners: tuple = (1,)
    # Rounds of ours (each runner count) and the exact-work floor under the
    # load probe, alternating.
    probed_rounds: int = 1


@dataclass
class Results:
    figures: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)


# --- databases -----------------------------------------------------------------


class Databases:
    """Creates and drops the benchmark databases on the configured server."""

    def __init__(self, prefix):
        self.base = dict(settings.DATABASES["default"])
        self.original_name = self.base["NAME"]
        self.prefix = prefix
        self.template = f"{prefix}_template"

    def _admin(self):
        params = self._params("postgres")
        return psycopg.connect(**params, autocommit=True)

    def _params(self, name):
        options = self.base.get("OPTIONS", {})
        params = {"dbname": name, "user": self.base.get("USER") or None}
        host = self.base.get("HOST") or options.get("host")
        if host:
            params["host"] = host
        if self.base.get("PORT"):
            params["port"] = self.base["PORT"]
        if self.base.get("PASSWORD"):
            params["password"] = self.base["PASSWORD"]
        return params

    def url(self, name):
        p = self._params(name)
        auth = f"{p.get('user') or ''}:{p.get('password') or ''}@"
        host = p.get("host", "")
        if host.startswith("/"):
            port = f"&port={p['port']}" if p.get("port") else ""
            return f"postgresql://{auth}/{name}?host={host}{port}"
        return f"postgresql://{auth}{host}:{p.get('port') or 5432}/{name}"

    def recreate(self, name, template=None):
        connections.close_all()
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if template:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            else:
                admin.execute(f'CREATE DATABASE "{name}"')

    def drop(self, name):
        connections.close_all()
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def use(self, name):
        """Point this process's Django connection at another database."""
        connections.close_all()
        settings.DATABASES["default"]["NAME"] = name
        connection.settings_dict["NAME"] = name
        try:
            yield
        finally:
            connections.close_all()
            settings.DATABASES["default"]["NAME"] = self.original_name
            connection.settings_dict["NAME"] = self.original_name

    def size(self, name):
        with self._admin() as admin:
            return admin.execute("SELECT pg_database_size(%s)", [name]).fetchone()[0]


def _manage(args, *, database_url, extra_env=None, capture=True):
    env = {**os.environ, "DATABASE_URL": database_url, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        check=True,
        capture_output=capture,
        text=True,
    )


# --- dataset -------------------------------------------------------------------


def build_template(config: BenchConfig, dbs: Databases, log) -> dict:
    dbs.recreate(dbs.template)
    url = dbs.url(dbs.template)
    figures = {}
    t0 = time.monotonic()
    _manage(["migrate", "--noinput"], database_url=url)
    figures["migrate_s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    _manage(
        [
            "seed_demo",
            "--profiles",
            str(config.profiles),
            "--events-per-profile",
            str(config.events_per_profile),
            "--no-users",
            "--no-refresh",
        ],
        database_url=url,
    )
    figures["seed_demo_s"] = round(time.monotonic() - t0, 2)
    log(f"  seeded {config.profiles:,} profiles in {figures['seed_demo_s']}s")
    every = max(1, round(1 / config.segment_share)) if config.segment_share > 0 else 0
    with dbs.use(dbs.template):
        from segments.models import Segment

        with connection.cursor() as cursor:
            bench = Segment.objects.create(
                name=BENCH_SEGMENT, description="Interleaved with profiles that stay."
            )
            others = [
                Segment.objects.create(name=f"Benchmark: other {label}") for label in ("A", "B")
            ]
            # The segment to delete: every `every`-th profile, interleaved with survivors.
            cursor.execute(
                "INSERT INTO segments_segmentmembership (segment_id, profile_id, joined_at) "
                "SELECT %s, id, now() FROM profiles_profile WHERE id %% %s = 0",
                [bench.pk, every],
            )
            members = cursor.rowcount
            # Memberships in other segments, overlapping both groups.
            cursor.execute(
                "INSERT INTO segments_segmentmembership (segment_id, profile_id, joined_at) "
                "SELECT %s, id, now() FROM profiles_profile WHERE id %% 3 = 0",
                [others[0].pk],
            )
            cursor.execute(
                "INSERT INTO segments_segmentmembership (segment_id, profile_id, joined_at) "
                "SELECT %s, id, now() FROM profiles_profile WHERE id %% 5 IN (1, 2)",
                [others[1].pk],
            )
            Segment.objects.filter(pk=bench.pk).update(member_count=members)
        figures["segment_members"] = members
        figures.update(_time_refresh(log))
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            cursor.execute(
                "SELECT (SELECT count(*) FROM profiles_event), "
                "(SELECT count(*) FROM profiles_subscriptionpreference), "
                "(SELECT count(*) FROM messaging_message), "
                "(SELECT count(*) FROM messaging_messageactivity), "
                "(SELECT count(*) FROM segments_segmentmembership)"
            )
            events, prefs, messages, activity, memberships = cursor.fetchone()
    figures.update(
        events=events,
        preferences=prefs,
        messages=messages,
        activity=activity,
        memberships=memberships,
        database_mb=round(dbs.size(dbs.template) / 2**20),
    )
    return figures


def _time_refresh(log) -> dict:
    """How long a rule-based refresh takes at this size (a demo segment)."""
    try:
        from segments.services import segment_refresh
    except ImportError:  # refresh not available in this build
        return {}
    from segments.management.commands.seed_demo import DEMO_SEGMENTS
    from segments.models import Segment

    figures = {}
    name, description, rules = DEMO_SEGMENTS[0]
    segment, _ = Segment.objects.get_or_create(
        name=name, defaults={"description": description, "rules": rules}
    )
    t0 = time.monotonic()
    count = segment_refresh(segment=segment)
    figures["refresh_s"] = round(time.monotonic() - t0, 2)
    figures["refresh_members"] = count
    log(f"  refreshed {name!r} ({count:,} profiles) in {figures['refresh_s']}s")
    return figures


def _snapshot_profile_ids_sql():
    return (
        "SELECT profile_id FROM segments_segmentmembership m JOIN segments_segment s "
        "ON s.id = m.segment_id WHERE s.name = %s"
    )


def survivor_checksums(doomed_sql, params, *, max_profile_id=None) -> dict:
    """One checksum per table over every row of every profile that must stay
    (ingested benchmark events, profiles created during the run and
    profiles' updated_at excluded)."""
    if max_profile_id is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM profiles_profile")
            max_profile_id = cursor.fetchone()[0]
    sums = {"max_profile_id": max_profile_id}
    with connection.cursor() as cursor:
        for table, column in PROFILE_TABLES.items():
            extra = f" AND t.{column} <= {int(max_profile_id)}"
            if table == "profiles_event":
                extra += f" AND t.name <> '{INGEST_EVENT}'"
            cursor.execute(
                f"""
                SELECT count(*), md5(coalesce(string_agg(
                    (to_jsonb(t) - 'updated_at')::text, '|' ORDER BY t.id), ''))
                FROM {table} t
                WHERE t.{column} IS NOT NULL AND t.{column} NOT IN ({doomed_sql}){extra}
                """,
                params,
            )
            sums[table] = cursor.fetchone()
    return sums


def campaign_counts() -> list:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.campaign_id, count(DISTINCT m.id), count(a.id) "
            "FROM messaging_message m LEFT JOIN messaging_messageactivity a "
            "ON a.message_id = m.id GROUP BY 1 ORDER BY 1"
        )
        return cursor.fetchall()


def leftovers(doomed_sql, params) -> dict:
    """Rows of doomed profiles that still exist, and anonymized rows with personal data."""
    found = {}
    with connection.cursor() as cursor:
        for table, column in PROFILE_TABLES.items():
            cursor.execute(
                f"SELECT count(*) FROM {table} WHERE {column} IN ({doomed_sql})",
                params,
            )
            found[table] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM messaging_message WHERE profile_id IS NULL "
            "AND recipient_email <> ''"
        )
        found["anonymized messages with email"] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM messaging_messageactivity WHERE profile_id IS NULL "
            "AND (ip_address IS NOT NULL OR user_agent <> '')"
        )
        found["anonymized activity with IP or agent"] = cursor.fetchone()[0]
    return found


# --- contenders ----------------------------------------------------------------


def _snapshot_ids_of_job(job_id):
    return "SELECT profile_id FROM segments_deletionjobprofile WHERE job_id = %s", [job_id]


@contextmanager
def _floor_copy(dbs: Databases, name: str):
    """A fresh copy with the job and its snapshot as ``deletion_start`` makes
    them (not timed); yields (job, finish), where ``finish(figures)`` adds
    the end-state checks to a floor's figures."""
    dbs.recreate(name, template=dbs.template)
    with dbs.use(name):
        from django.contrib.auth.models import User

        from segments.deletion.services import _snapshot_membership
        from segments.models import DeletionJob, Segment

        segment = Segment.objects.get(name=BENCH_SEGMENT)
        user = User.objects.create(username="bench-floor")
        job = DeletionJob.objects.create(
            segment=segment,
            segment_name=segment.name,
            created_by=user,
            created_by_username=user.username,
            status="completed",
        )
        job.total = _snapshot_membership(job=job, segment=segment)
        doomed_sql, params = _snapshot_ids_of_job(job.pk)
        before = survivor_checksums(doomed_sql, params)
        counts_before = campaign_counts()

        def finish(figures):
            connections.close_all()
            figures.update(
                survivors_unchanged=survivor_checksums(
                    doomed_sql, params, max_profile_id=before["max_profile_id"]
                )
                == before,
                campaign_counts_unchanged=campaign_counts() == counts_before,
                leftovers=leftovers(doomed_sql, params),
            )
            return figures

        yield job, finish


def run_floor(dbs: Databases, name: str, log) -> dict:
    """The same erasure as one transaction of joins against the snapshot."""
    with _floor_copy(dbs, name) as (job, finish):
        snap = "segments_deletionjobprofile"
        # The same work as a batch, set-based over the whole snapshot: the
        # activity of the person's messages too, click URLs cut down, kept
        # rows dated (the admin log holds nothing about them here).
        from profiles.erasure import url_kept_sql

        url = url_kept_sql("url")
        statements = [
            f"UPDATE messaging_messageactivity t SET profile_id = NULL, ip_address = NULL, "
            f"user_agent = '', url = {url}, anonymized_on = CURRENT_DATE "
            f"WHERE t.id IN (SELECT a.id FROM messaging_messageactivity a JOIN {snap} s "
            f"ON a.profile_id = s.profile_id WHERE s.job_id = %s "
            f"UNION SELECT a.id FROM messaging_messageactivity a "
            f"JOIN messaging_message m ON a.message_id = m.id "
            f"JOIN {snap} s ON m.profile_id = s.profile_id WHERE s.job_id = %s)",
            f"UPDATE messaging_message t SET profile_id = NULL, recipient_email = '', "
            f"anonymized_on = CURRENT_DATE "
            f"FROM {snap} s WHERE s.job_id = %s AND t.profile_id = s.profile_id",
            f"DELETE FROM profiles_event t USING {snap} s "
            f"WHERE s.job_id = %s AND t.profile_id = s.profile_id",
            f"DELETE FROM profiles_subscriptionpreference t USING {snap} s "
            f"WHERE s.job_id = %s AND t.profile_id = s.profile_id",
            f"DELETE FROM segments_segmentmembership t USING {snap} s "
            f"WHERE s.job_id = %s AND t.profile_id = s.profile_id",
            f"DELETE FROM profiles_profile t USING {snap} s "
            f"WHERE s.job_id = %s AND t.id = s.profile_id",
        ]
        connection.ensure_connection()
        t0 = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            rows = []
            for sql in statements:
                cursor.execute(sql, [job.pk] * sql.count("%s"))
                rows.append(cursor.rowcount)
            cursor.execute("COMMIT")
        seconds = time.monotonic() - t0
        log(f"  floor (joins): {job.total:,} profiles in {seconds:.2f}s")
        return finish(
            {
                "seconds": round(seconds, 3),
                "profiles": rows[-1],
                "events": rows[2],
                "activity_anonymized": rows[0],
            }
        )


def run_floor_plpgsql(
    dbs: Databases,
    name: str,
    log,
    *,
    batch_sizes=None,
    receipt: bool = False,
    probe_requests: int | None = None,
) -> dict:
    """The erasure_plan() statements in PL/pgSQL: batched with a COMMIT each
    (``batch_sizes`` given: the sizes our job used; with ``receipt``, each
    batch writes the receipt too), or one transaction over the array of
    every id. With ``probe_requests``, the pages and the API are measured
    as for ours (``LoadProbe``): that many idle requests of each kind, then
    while the floor runs."""
    from segments.deletion import benchmark_floors as floors

    with _floor_copy(dbs, name) as (job, finish):
        with connection.cursor() as cursor:
            steps = floors.erasure_steps(cursor)
        if batch_sizes is None:
            block = floors.array_block(job_id=job.pk, steps=steps)
        else:
            block = floors.loop_block(
                job_id=job.pk, sizes=batch_sizes, steps=steps, receipt=receipt
            )
        probe = None
        if probe_requests:
            from django.contrib.auth.models import Group, User

            prober = User.objects.create_user("bench-prober")
            prober.groups.add(Group.objects.get(name="Editors"))
            inside_user, outside_user = _probe_users(*_snapshot_ids_of_job(job.pk))
            requests = _probe_requests(
                segment=job.segment,
                job=job,
                cookie=_session_cookie(prober),
                api_key=_api_key(),
                inside_user=inside_user,
                outside_user=outside_user,
            )
            probe = LoadProbe(dbs.url(name), requests, idle_requests=probe_requests)
        connections.close_all()
        try:
            if probe:
                probe.idle()
                probe.start()
            started = time.time()
            seconds, report = floors.run_block(dbs._params(name), block)
            if probe:
                probe.stop(window=(started, time.time()))
        finally:
            if probe:
                probe.close()
        labels = [label for label, _ in steps]
        counts = dict(zip(labels, report["counts"], strict=True))
        step_ms = {label: round(ms, 1) for label, ms in zip(labels, report["step_ms"], strict=True)}
        batch_ms = report["batch_ms"]
        kind = "array" if batch_sizes is None else "loop + receipt" if receipt else "loop"
        log(f"  floor ({kind}): {job.total:,} profiles in {seconds:.2f}s")
        return finish(
            {
                "seconds": round(seconds, 3),
                "profiles": counts["profiles.profile"],
                "events": counts.get("profiles.event", 0),
                "activity_anonymized": counts.get("messaging.messageactivity", 0),
                "batches": len(batch_ms),
                "mean_batch_ms": round(statistics.mean(batch_ms), 1) if batch_ms else None,
                "longest_batch_ms": round(max(batch_ms), 1) if batch_ms else None,
                # Milliseconds summed over the run, per statement of the plan.
                "step_ms": step_ms,
                "lock_ms": round(report["lock_ms"], 1),
                "receipt_ms": round(report.get("receipt_ms", 0), 1),
                "receipt_entries": report.get("receipt_entries", 0),
                "latency": probe.latency if probe else {},
            }
        )


NAIVE_CHILD = r"""
import json, os, resource, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vero_admin.settings")
django.setup()
from messaging.models import Message, MessageActivity
from profiles.models import Profile
from segments.models import Segment
segment = Segment.objects.get(name=sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.monotonic()
people = Profile.objects.filter(memberships__segment=segment)
Message.objects.filter(profile__in=people).update(recipient_email="")
MessageActivity.objects.filter(profile__in=people).update(ip_address=None, user_agent="")
deleted, per_model = people.delete()
seconds = time.monotonic() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024,
                  "growth_mb": (peak - base) / 1024, "per_model": per_model}))
"""


def run_naive(dbs: Databases, name: str, log) -> dict:
    dbs.recreate(name, template=dbs.template)
    with dbs.use(name):
        doomed_sql = _snapshot_profile_ids_sql()
        # Freeze the doomed ids before the naive delete removes the memberships.
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE bench_doomed AS {doomed_sql}",
                [BENCH_SEGMENT],
            )
        frozen = "SELECT profile_id FROM bench_doomed"
        before = survivor_checksums(frozen, [])
        counts_before = campaign_counts()
    env = {**os.environ, "DATABASE_URL": dbs.url(name)}
    proc = subprocess.run(
        [sys.executable, "-c", NAIVE_CHILD, BENCH_SEGMENT],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"  naive: {result['seconds']:.2f}s, peak RSS {result['peak_rss_mb']:.0f} MB")
    with dbs.use(name):
        result["survivors_unchanged"] = (
            survivor_checksums(frozen, [], max_profile_id=before["max_profile_id"]) == before
        )
        result["campaign_counts_unchanged"] = campaign_counts() == counts_before
        result["leftovers"] = leftovers(frozen, [])
    result["seconds"] = round(result["seconds"], 3)
    result["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    result["growth_mb"] = round(result["growth_mb"], 1)
    return result


# --- ours, with the web and API under load --------------------------------------


class RssSampler:
    """Peak resident memory of the qcluster processes, sampled every 20 ms."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_worker = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                for child in root.children(recursive=True):
                    with suppress(psutil.Error):
                        self.peak_worker = max(self.peak_worker, child.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(5)


def _confirm_bench_job(username: str):
    """Confirm the benchmark segment's deletion as the UI does (no worker runs
    yet, so the job waits), and take what the end state is checked against:
    the job, its snapshot's ids as SQL, the survivors' checksums and the
    campaigns' counts."""
    from django.contrib.auth.models import Group, User

    from segments.deletion.services import deletion_start
    from segments.models import Segment

    segment = Segment.objects.get(name=BENCH_SEGMENT)
    user = User.objects.create_user(username)
    user.groups.add(Group.objects.get(name="Editors"))
    job = deletion_start(
        segment=segment, user=user, typed_name=segment.name, expected_count=segment.member_count
    ).job
    doomed_sql, params = _snapshot_ids_of_job(job.pk)
    return job, doomed_sql, params, survivor_checksums(doomed_sql, params), campaign_counts()


def wal_position(dbs: Databases) -> dict:
    """Where the server's WAL is: its insert position, and pg_stat_wal's
    bytes (flushed by each backend as its transactions end; the caller reads
    it after the worker's sessions have closed)."""
    with dbs._admin() as admin:
        admin.execute("SELECT pg_stat_clear_snapshot()")
        lsn, written = admin.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
            "(SELECT wal_bytes FROM pg_stat_wal)::bigint"
        ).fetchone()
    return {"lsn": lsn, "wal_bytes": written}


def between_batches(job, batch_log) -> dict:
    """Where a one-runner job's time goes outside its batch calls: from the
    job's start to its first batch, between batches (the commit, the worker's
    Python, a new task every DELETION_SLICE_SECONDS) and from its last batch
    to its end. A batch's log row has the worker's clock at its end and its
    duration, so its start is the one less the other."""
    if not batch_log:
        return {}
    gaps_ms = []
    previous_end = job.started_at
    for _, ms, finished_at in batch_log:
        start = finished_at - timedelta(milliseconds=ms)
        gaps_ms.append((start - previous_end).total_seconds() * 1000)
        previous_end = finished_at
    between = gaps_ms[1:]
    seconds = (job.finished_at - job.started_at).total_seconds()
    return {
        "in_batch_calls_s": round(sum(ms for _, ms, _ in batch_log) / 1000, 3),
        "outside_batch_calls_s": round(seconds - sum(ms for _, ms, _ in batch_log) / 1000, 3),
        "before_first_batch_ms": round(gaps_ms[0], 1),
        "between_batches_s": round(sum(between) / 1000, 3),
        "between_batches_median_ms": _round(statistics.median(between)) if between else None,
        "between_batches_longest_ms": _round(max(between)) if between else None,
        "after_last_batch_ms": round((job.finished_at - previous_end).total_seconds() * 1000, 1),
    }


def run_ours(
    config: BenchConfig, dbs: Databases, name: str, log, *, http: bool, runners: int = 1
) -> dict:
    dbs.recreate(name, template=dbs.template)
    url = dbs.url(name)
    with dbs.use(name):
        from segments.models import DeletionBatch, DeletionJob

        job, doomed_sql, params, before, counts_before = _confirm_bench_job("bench-editor")
        requests = None
        if http:
            inside_user, outside_user = _probe_users(doomed_sql, params)
            requests = _probe_requests(
                segment=job.segment,
                job=job,
                cookie=_session_cookie(job.created_by),
                api_key=_api_key(),
                inside_user=inside_user,
                outside_user=outside_user,
            )

    figures = {"total": job.total, "runners": runners}
    probe = LoadProbe(url, requests, idle_requests=config.requests) if http else None
    try:
        if probe:
            probe.idle()
            log("  idle latencies measured")

        wal_before = wal_position(dbs)
        cluster = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "qcluster"],
            # A worker per runner (the job's own task only hands out theirs).
            env={
                **production_env(url),
                "Q_WORKERS": str(runners),
                "DELETION_RUNNERS": str(runners),
            },
            cwd=BASE_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        rss = RssSampler(cluster.pid).start()
        if probe:
            probe.start()
        with dbs.use(name):
            while True:
                state = DeletionJob.objects.get(pk=job.pk)
                if not state.is_active:
                    break
                time.sleep(0.05)
        if probe:
            span = (state.started_at, state.finished_at)
            probe.stop(window=tuple(t.timestamp() for t in span) if all(span) else None)
        rss.stop()
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(10)
        time.sleep(0.5)  # the worker's sessions flush their statistics as they close
        wal_after = wal_position(dbs)
    finally:
        if probe:
            probe.close()

    with dbs.use(name):
        job = DeletionJob.objects.get(pk=job.pk)
        batch_log = list(
            DeletionBatch.objects.filter(job=job)
            .order_by("id")
            .values_list("profiles", "duration_ms", "finished_at")
        )
        batch_ms = [ms for _, ms, _ in batch_log]
        seconds = (job.finished_at - job.started_at).total_seconds()
        with connection.cursor() as cursor:
            # What a job keeps per deleted profile: its snapshot and receipt rows.
            cursor.execute(
                "SELECT pg_total_relation_size('segments_deletionjobprofile'), "
                "pg_total_relation_size('segments_deletionreceiptbatch')"
            )
            snapshot_bytes, receipt_bytes = cursor.fetchone()
        figures.update(
            status=job.status,
            error=job.error,
            seconds=round(seconds, 3),
            deleted=job.deleted,
            skipped=job.skipped,
            events=job.events_deleted,
            activity_anonymized=job.activity_anonymized,
            profiles_per_s=round(job.deleted / seconds) if seconds else None,
            events_per_s=round(job.events_deleted / seconds) if seconds else None,
            activity_per_s=round(job.activity_anonymized / seconds) if seconds else None,
            batches=len(batch_ms),
            batch_sizes=[size for size, _, _ in batch_log],
            longest_batch_ms=max(batch_ms, default=0),
            p95_batch_ms=percentile(batch_ms, 95),
            mean_batch_ms=round(statistics.mean(batch_ms), 1) if batch_ms else None,
            worker_peak_rss_mb=round(rss.peak_worker / 2**20, 1),
            # The whole server's WAL while the job ran (its receipt file and
            # emails are not in it; nothing else should write meanwhile).
            wal_mb=round((wal_after["lsn"] - wal_before["lsn"]) / 2**20, 1),
            pg_stat_wal_mb=round((wal_after["wal_bytes"] - wal_before["wal_bytes"]) / 2**20, 1),
            snapshot_bytes_per_profile=round(snapshot_bytes / job.total) if job.total else None,
            receipt_bytes_per_profile=round(receipt_bytes / job.total) if job.total else None,
            survivors_unchanged=survivor_checksums(
                doomed_sql, params, max_profile_id=before["max_profile_id"]
            )
            == before,
            campaign_counts_unchanged=campaign_counts() == counts_before,
            leftovers=leftovers(doomed_sql, params),
            latency=probe.latency if probe else {},
            **(between_batches(job, batch_log) if runners == 1 else {}),
        )
    log(
        f"  ours, {runners} runner{'s' if runners != 1 else ''}: {job.deleted:,} profiles in "
        f"{seconds:.2f}s ({job.status}); WAL {figures['wal_mb']} MB "
        f"(pg_stat_wal {figures['pg_stat_wal_mb']} MB)"
    )
    return figures


# --- the whole run --------------------------------------------------------------


CONTENDERS = {
    "ours": "ours (qcluster job)",
    "floor_loop": "floor: PL/pgSQL loop, our batches",
    "floor_array": "floor: one txn over id array",
    "floor_join": "floor: one txn, joins",
    "floor_loop_receipt": "floor: the loop + our receipt",
}
FLOORS = ("floor_loop", "floor_array", "floor_join")
# Measured beside the floors, never the best floor: it does more than erase.
EXACT_WORK = ("floor_loop_receipt",)


def ours_key(runners: int) -> str:
    """Ours with one runner is "ours", as before runners existed."""
    return "ours" if runners == 1 else f"ours_{runners}_runners"


def contenders(config: BenchConfig) -> dict:
    ours = {
        ours_key(n): CONTENDERS["ours"] if n == 1 else f"ours, {n} parallel runners"
        for n in config.runners
    }
    return {**ours, **{key: CONTENDERS[key] for key in (*FLOORS, *EXACT_WORK)}}


def spread(values) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def probed_label(key: str) -> str:
    """ "1" -> "ours, 1 runner", "floor" -> the exact-work floor."""
    if key == "floor":
        return "floor: the loop + our receipt"
    return f"ours, {key} runner{'s' if key != '1' else ''}"


def _outside_p99(run):
    figures = run.get("latency", {}).get("ingest outside", {})
    return figures.get("idle", {}).get("p99_ms"), figures.get("during", {}).get("p99_ms")


def _times(run):
    idle, during = _outside_p99(run)
    return during / idle if idle and during else None


def _median_probed_run(runs):
    """The probed run whose ingestion p99 during / idle is the median one (the
    lower of the middle two for an even count): it stands for its contender
    in the tables. Runs without both figures (a deletion over before a
    request returned) are left out unless no run has them."""
    ranked = sorted((run for run in runs if _times(run) is not None), key=_times) or runs
    return ranked[(len(ranked) - 1) // 2]


def _p99_spread(runs) -> dict:
    """Ingestion outside the segment, p99 idle and during, run by run, and
    the median and spread of during / idle."""
    pairs = [_outside_p99(run) for run in runs]
    times = [round(during / idle, 2) for idle, during in pairs if idle and during]
    return {
        "idle_ms": [idle for idle, _ in pairs],
        "during_ms": [during for _, during in pairs],
        "times": spread(times) if times else None,
    }


def benchmark_deletion(config: BenchConfig, log=print) -> dict:
    dbs = Databases(config.prefix)
    started = time.monotonic()
    log(f"Building {config.profiles:,} profiles x {config.events_per_profile} events…")
    data = build_template(config, dbs, log)
    names = {k: f"{config.prefix}_{k}" for k in ("ours", *FLOORS, *EXACT_WORK, "naive", "phases")}
    result = {"data": data, "machine": machine_info(dbs)}
    keys = contenders(config)
    runs = {key: [] for key in keys}

    def done(name):
        if not config.keep:
            dbs.drop(name)

    try:
        # Rounds alternate the contenders on fresh copies of the template, so
        # a slow minute of a loaded machine falls on all of them alike. The
        # loop floor takes the batch sizes our job chose in the same round.
        for i in range(config.repeat):
            log(f"Round {i + 1} of {config.repeat}")
            for runners in config.runners:
                ours = run_ours(config, dbs, names["ours"], log, http=False, runners=runners)
                runs[ours_key(runners)].append(ours)
                done(names["ours"])
            sizes = runs[ours_key(config.runners[0])][-1]["batch_sizes"]
            runs["floor_loop"].append(
                run_floor_plpgsql(dbs, names["floor_loop"], log, batch_sizes=sizes or [1000])
            )
            done(names["floor_loop"])
            runs["floor_loop_receipt"].append(
                run_floor_plpgsql(
                    dbs, names["floor_loop_receipt"], log, batch_sizes=sizes or [1000], receipt=True
                )
            )
            done(names["floor_loop_receipt"])
            runs["floor_array"].append(run_floor_plpgsql(dbs, names["floor_array"], log))
            done(names["floor_array"])
            runs["floor_join"].append(run_floor(dbs, names["floor_join"], log))
            done(names["floor_join"])
        if config.http:
            # The same job again while the pages and the API are under load,
            # with each runner count; then our exact work with nothing of
            # the job around it, under the same probe: what any deletion at
            # this speed costs the pages and ingestion, against what ours
            # costs them. Alternating, `probed_rounds` times.
            probed = {**{str(n): [] for n in config.runners}, "floor": []}
            for i in range(config.probed_rounds):
                log(f"Probed round {i + 1} of {config.probed_rounds}")
                for runners in config.runners:
                    probed[str(runners)].append(
                        run_ours(config, dbs, names["ours"], log, http=True, runners=runners)
                    )
                    done(names["ours"])
                sizes = probed[str(config.runners[0])][-1]["batch_sizes"]
                probed["floor"].append(
                    run_floor_plpgsql(
                        dbs,
                        names["floor_loop_receipt"],
                        log,
                        batch_sizes=sizes or [1000],
                        receipt=True,
                        probe_requests=config.requests,
                    )
                )
                done(names["floor_loop_receipt"])
            median_runs = {key: _median_probed_run(runs) for key, runs in probed.items()}
            result["ours_under_load"] = median_runs[str(config.runners[0])]
            result["ours_under_load_by_runners"] = {
                str(n): median_runs[str(n)] for n in config.runners
            }
            result["floor_under_load"] = median_runs["floor"]
            result["probed_runs"] = probed
            result["ingestion_outside_p99"] = {
                key: _p99_spread(runs) for key, runs in probed.items()
            }
        if config.phases:
            result["phases"] = run_phases(dbs, names["phases"], log)
            done(names["phases"])
        if config.naive:
            result["naive"] = run_naive(dbs, names["naive"], log)
            done(names["naive"])
    finally:
        if not config.keep:
            for name in [*names.values(), dbs.template]:
                dbs.drop(name)
    result["runs"] = runs
    result["labels"] = keys
    result["summary"] = {key: spread([r["seconds"] for r in runs[key]]) for key in keys}
    # The run of ours with the median time stands for ours in the details.
    first = ours_key(config.runners[0])
    median_ours = sorted(runs[first], key=lambda r: r["seconds"])[(config.repeat - 1) // 2]
    latency = result.get("ours_under_load", {}).get("latency", {})
    result["ours"] = {**median_ours, "latency": latency}
    result["floor"] = runs["floor_join"][0]
    summary = result["summary"]
    best = min(FLOORS, key=lambda key: summary[key]["median"])
    ours_s = summary[first]["median"]
    result["ratios"] = {
        "best_floor": best,
        "ours_over_best_floor": _ratio(ours_s, summary[best]["median"]),
        **{
            f"ours_over_{key}": _ratio(ours_s, summary[key]["median"])
            for key in (*FLOORS, *EXACT_WORK)
        },
        **{
            f"{ours_key(n)}_over_best_floor": _ratio(
                summary[ours_key(n)]["median"], summary[best]["median"]
            )
            for n in config.runners
            if n != 1
        },
        "naive_over_ours": _ratio(result.get("naive", {}).get("seconds"), ours_s),
        "seconds_per_10k_profiles": _ratio(ours_s * 10_000, result["ours"]["deleted"]),
    }
    result["verified"] = verified(result)
    result["config"] = config.__dict__
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def run_phases(dbs: Databases, name: str, log) -> dict:
    """Our job once more, run in this process with every statement timed
    (see ``benchmark_phases``), to say where a batch's time goes."""
    from django.test.utils import override_settings

    dbs.recreate(name, template=dbs.template)
    with dbs.use(name):
        from segments.deletion.benchmark_phases import profile_job, round_trip_ms
        from segments.models import DeletionJob

        job, doomed_sql, params, before, counts_before = _confirm_bench_job("bench-phases")
        # As in production (DEBUG off): no query log kept by Django.
        with override_settings(DEBUG=False):
            trip = round_trip_ms()
            figures = profile_job(job.pk)
        job = DeletionJob.objects.get(pk=job.pk)
        figures.update(
            round_trip_ms=round(trip, 3),
            status=job.status,
            deleted=job.deleted,
            survivors_unchanged=survivor_checksums(
                doomed_sql, params, max_profile_id=before["max_profile_id"]
            )
            == before,
            campaign_counts_unchanged=campaign_counts() == counts_before,
            leftovers=leftovers(doomed_sql, params),
        )
    log(
        f"  phases: {figures['batches']} batches, {figures['mean_batch_ms']} ms each, "
        f"{figures['round_trips_per_batch']} round trips per batch"
    )
    return figures


def _ratio(a, b):
    if a is None or not b:
        return None
    return round(a / b, 2)


def verified(result) -> bool:
    ok = True
    parts = [result.get("ours_under_load"), result.get("floor_under_load"), result.get("naive")]
    parts += list(result.get("ours_under_load_by_runners", {}).values())
    probed = result.get("probed_runs", {})
    parts += [run for runs in probed.values() for run in runs]
    parts += [run for runs in result.get("runs", {}).values() for run in runs]
    for part in filter(None, parts):
        ok &= part["survivors_unchanged"] and part["campaign_counts_unchanged"]
        ok &= not any(part["leftovers"].values())
    phases = result.get("phases")
    if phases:
        ok &= phases["status"] == "completed" and phases["survivors_unchanged"]
        ok &= phases["campaign_counts_unchanged"] and not any(phases["leftovers"].values())
    ours_runs = [
        run
        for key, runs in result.get("runs", {}).items()
        if key.startswith("ours")
        for run in runs
    ]
    ours_probed = [run for key, runs in probed.items() if key != "floor" for run in runs]
    for ours in [*ours_runs, *ours_probed, result.get("ours_under_load")]:
        if ours:
            ok &= ours["status"] == "completed"
            ok &= ours["deleted"] + ours["skipped"] == ours["total"]
    return bool(ok)


def machine_info(dbs) -> dict:
    with dbs._admin() as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": version,
        "bench_process_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }


def format_table(result) -> str:
    d, ours = result["data"], result["ours"]
    naive = result.get("naive")
    m = result["machine"]
    summary, r = result["summary"], result["ratios"]
    total = ours["total"]
    lines = [
        f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, PostgreSQL {m['postgresql']}, "
        f"Python {m['python']}",
        f"Data: {result['config']['profiles']:,} profiles, {d['events']:,} events, "
        f"{d['preferences']:,} preferences, {d['memberships']:,} memberships, "
        f"{d['messages']:,} messages, {d['activity']:,} activity rows, {d['database_mb']} MB; "
        f"segment to delete: {d['segment_members']:,} profiles",
        f"seed_demo: {d['seed_demo_s']} s"
        + (f"; refresh of a rule-based segment: {d['refresh_s']} s" if "refresh_s" in d else ""),
        "",
        f"{summary['ours']['n']} rounds, contenders alternating on fresh copies; seconds",
        f"{'':36}{'median':>8}{'min-max':>15}{'profiles/s':>12}{'ours / it':>11}",
    ]
    labels = result.get("labels", CONTENDERS)
    for key, label in labels.items():
        s = summary[key]
        rate = round(total / s["median"]) if s["median"] else 0
        if key.startswith("ours"):
            ratio = "" if key == "ours" else f"{r[f'{key}_over_best_floor']:.2f}*"
        else:
            ratio = f"{r[f'ours_over_{key}']:.2f}"
        lines.append(
            f"{label:36}{s['median']:>8.2f}{s['min']:>8.2f}-{s['max']:<6.2f}{rate:>12,}{ratio:>11}"
        )
    lines += [
        "",
        f"ours / best floor ({CONTENDERS[r['best_floor']]}): {r['ours_over_best_floor']} "
        f"(medians)   naive / ours: {r['naive_over_ours']}   "
        f"seconds per 10k profiles: {r['seconds_per_10k_profiles']}",
        f"ours, median run: batches {ours['batches']}, longest {ours['longest_batch_ms']} ms, "
        f"p95 {ours['p95_batch_ms']} ms, mean {ours['mean_batch_ms']} ms; "
        f"worker peak RSS {ours['worker_peak_rss_mb']} MB",
    ]
    if any(key.startswith("ours_") for key in labels):
        lines.append("* a row of parallel runners: it over the best floor (medians)")
    for key in labels:
        if key.startswith("ours") and result["runs"][key] and "wal_mb" in result["runs"][key][0]:
            wal = statistics.median(run["wal_mb"] for run in result["runs"][key])
            stat = statistics.median(run["pg_stat_wal_mb"] for run in result["runs"][key])
            lines.append(
                f"WAL, {labels[key]}: {wal} MB (pg_stat_wal {stat} MB) for {total:,} profiles "
                f"deleted, {wal * 1_000_000 / total / 1024:.2f} GB per million (median of rounds)"
            )
    loop = result["runs"]["floor_loop"]
    if loop and loop[0].get("mean_batch_ms") is not None:
        lines.append(
            "floor loop: mean batch "
            f"{statistics.median(x['mean_batch_ms'] for x in loop):.1f} ms (median of rounds)"
        )
    loaded = result.get("ours_under_load")
    if loaded:
        lines.append(
            f"ours with pages+API busy: {loaded['seconds']:.2f} s, batches {loaded['batches']}, "
            f"longest {loaded['longest_batch_ms']} ms, p95 {loaded['p95_batch_ms']} ms"
        )
    if naive:
        lines.append(
            f"naive (ORM delete): {naive['seconds']:.2f} s, peak RSS {naive['peak_rss_mb']} MB"
        )
    if ours.get("outside_batch_calls_s") is not None:
        line = (
            f"ours, median run: {ours['in_batch_calls_s']} s in batch calls, "
            f"{ours['outside_batch_calls_s']} s outside them"
        )
        if ours["between_batches_median_ms"] is not None:  # one batch has no "between"
            line += (
                f"; between batches median {ours['between_batches_median_ms']} ms, "
                f"longest {ours['between_batches_longest_ms']} ms"
            )
        lines.append(line)
    probed = [
        (probed_label(n), run) for n, run in result.get("ours_under_load_by_runners", {}).items()
    ]
    if result.get("floor_under_load"):
        probed.append(("floor: the loop + our receipt", result["floor_under_load"]))
    spreads = result.get("ingestion_outside_p99", {})
    if probed:
        rounds = len(next(iter(result.get("probed_runs", {}).values()), [None]))
        lines.append(
            "ingestion outside the segment, p99 ms idle -> during "
            f"({'the median of ' + str(rounds) + ' runs' if rounds > 1 else 'one run'} each):"
        )
        for key, figures in spreads.items():
            if figures["times"] and figures["times"]["n"] > 1:
                t = figures["times"]
                lines.append(
                    f"  {probed_label(key)}: during / idle {t['median']}x "
                    f"({t['min']}-{t['max']}); idle {figures['idle_ms']}, "
                    f"during {figures['during_ms']}"
                )
        for label, run in probed:
            figures = run["latency"].get("ingest outside", {})
            idle, during = figures.get("idle", {}), figures.get("during", {})
            if idle.get("p99_ms") and during.get("p99_ms"):
                lines.append(
                    f"  {label}: {idle['p99_ms']} -> {during['p99_ms']} "
                    f"({during['p99_ms'] / idle['p99_ms']:.1f}x), {run['seconds']:.2f} s"
                )
    if ours["latency"]:
        lines += ["", f"{'latency (ms)':22}{'idle p50/p95/p99':>24}{'during job p50/p95/p99':>28}"]
        for name, figures in ours["latency"].items():
            idle, during = figures["idle"], figures.get("during", {})
            errors = figures["idle_errors"] + figures.get("during_errors", 0)
            lines.append(
                f"{name:22}{_trio(idle):>24}{_trio(during):>28}"
                + (f"   {errors} errors" if errors else "")
            )
    if result.get("phases"):
        lines += ["", *format_phases(result["phases"]), *format_loop_steps(loop)]
    lines += ["", "verified: " + ("yes" if result["verified"] else "NO")]
    return "\n".join(lines)


def loop_per_batch(loop_runs) -> dict:
    """The loop floor's time per batch (median round): the erasure statements,
    the lock, and the whole batch."""
    rounds = [r for r in loop_runs if r.get("batches")]
    if not rounds:
        return {}

    def per_batch(r):
        return {
            "erase_ms": sum(r["step_ms"].values()) / r["batches"],
            "lock_ms": r["lock_ms"] / r["batches"],
            "batch_ms": r["mean_batch_ms"],
        }

    figures = [per_batch(r) for r in rounds]
    return {key: round(statistics.median(f[key] for f in figures), 2) for key in figures[0]}


def format_loop_steps(loop_runs) -> list[str]:
    f = loop_per_batch(loop_runs)
    if not f:
        return []
    return [
        f"  the loop floor, per batch of the same sizes: {f['batch_ms']} ms, of which "
        f"erasure statements {f['erase_ms']} ms, lock {f['lock_ms']} ms"
    ]


def format_phases(p) -> list[str]:
    lines = [
        f"Where a batch of ours goes (one in-process run, every statement timed): "
        f"{p['batches']} batches, mean {p['mean_batch_ms']} ms, "
        f"{p['round_trips_per_batch']} round trips each (one round trip: "
        f"{p['round_trip_ms']} ms); job end (recounts) {p['end_of_job_ms']} ms",
        f"  erasure statements {p['erase_ms_per_batch']} ms, locking "
        f"{p['locking_ms_per_batch']} ms, bookkeeping {p['bookkeeping_ms_per_batch']} ms "
        "per batch",
    ]
    for phase, ms in p["phase_ms_per_batch"].items():
        lines.append(f"  {phase:34}{ms:>9.2f} ms")
    return lines


def _trio(summary):
    if not summary:
        return "-"
    return f"{summary['p50_ms']}/{summary['p95_ms']}/{summary['p99_ms']}"
