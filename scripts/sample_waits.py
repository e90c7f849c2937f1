"""Where the time goes while a benchmark runs: CPU or I/O.

Run it beside `manage.py benchmark_deletion` (same embedded server, or set
DATABASE_URL to the server the benchmark uses); stop it with Ctrl-C, or give
--seconds. Every --interval it samples the active backends of every database
(pg_stat_activity) and sorts them by what they run:

- deletion: the job's statements (the erasure function, the job's rows);
- ingestion: the API's writes (events and profiles);
- other: pages, floors, benchmark bookkeeping.

For each kind it counts the samples on CPU (no wait event), waiting on I/O,
on a lock or lightweight lock, or on the client. At the end it prints those
shares, the machine's CPU split from /proc/stat over the same time (user,
system, iowait, idle), and the pg_stat_io / pg_stat_wal deltas (blocks read
from outside shared buffers, written, extended; WAL bytes).

    .venv/bin/python scripts/sample_waits.py --seconds 600 --json waits.json

A read is one sample, not a trace: shares are as good as the number of
samples behind them, which it prints.
"""

import argparse
import collections
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent

DELETION = re.compile(
    r"vero_erase|segments_deletionjob|segments_deletionrunner|deletion", re.IGNORECASE
)
INGESTION = re.compile(
    r"INSERT INTO \"?profiles_event|INSERT INTO \"?profiles_profile|UPDATE \"?profiles_profile"
    r"|profiles_seenmessage",
    re.IGNORECASE,
)

ACTIVITY = """
SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), left(query, 400)
FROM pg_stat_activity
WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""

IO = """
SELECT backend_type, sum(coalesce(reads, 0)), sum(coalesce(writes, 0)),
       sum(coalesce(extends, 0)), sum(coalesce(hits, 0))
FROM pg_stat_io GROUP BY backend_type
"""


def database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    sys.path.insert(0, str(ROOT))
    from vero_admin import embedded_db

    return embedded_db.database_url()


def cpu_times() -> list[int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return [int(v) for v in fields]


def kind_of(query: str) -> str:
    if DELETION.search(query):
        return "deletion"
    if INGESTION.search(query):
        return "ingestion"
    return "other"


def bucket(wait_type: str) -> str:
    if wait_type == "CPU":
        return "cpu"
    if wait_type == "IO":
        return "io"
    if wait_type in ("Lock", "LWLock"):
        return "lock"
    if wait_type == "Client":
        return "client"
    return "other"


def io_totals(cursor) -> dict:
    cursor.execute(IO)
    return {row[0]: [int(v) for v in row[1:]] for row in cursor.fetchall()}


def wal_bytes(cursor) -> int:
    cursor.execute("SELECT wal_bytes FROM pg_stat_wal")
    return int(cursor.fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0, help="0: until Ctrl-C")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

    counts = collections.defaultdict(collections.Counter)
    events = collections.defaultdict(collections.Counter)
    samples = 0
    with psycopg.connect(database_url(), autocommit=True) as connection:
        cursor = connection.cursor()
        io_before, wal_before, cpu_before = io_totals(cursor), wal_bytes(cursor), cpu_times()
        started = time.monotonic()
        while not stop["now"]:
            if args.seconds and time.monotonic() - started >= args.seconds:
                break
            cursor.execute(ACTIVITY)
            for wait_type, wait_event, query in cursor.fetchall():
                kind = kind_of(query or "")
                counts[kind][bucket(wait_type)] += 1
                if wait_type != "CPU":
                    events[kind][f"{wait_type}:{wait_event}"] += 1
            samples += 1
            time.sleep(args.interval)
        elapsed = time.monotonic() - started
        io_after, wal_after, cpu_after = io_totals(cursor), wal_bytes(cursor), cpu_times()

    cpu = [after - before for after, before in zip(cpu_after, cpu_before, strict=False)]
    total = sum(cpu) or 1
    # /proc/stat: user nice system idle iowait irq softirq steal ...
    machine = {
        "user": (cpu[0] + cpu[1]) / total,
        "system": (cpu[2] + cpu[5] + cpu[6]) / total,
        "iowait": cpu[4] / total,
        "idle": cpu[3] / total,
    }
    io = {
        backend: dict(
            zip(
                ("reads", "writes", "extends", "hits"),
                [a - b for a, b in zip(after, io_before.get(backend, [0, 0, 0, 0]), strict=True)],
                strict=True,
            )
        )
        for backend, after in io_after.items()
    }
    io = {backend: figures for backend, figures in io.items() if any(figures.values())}
    report = {
        "seconds": round(elapsed, 1),
        "samples": samples,
        "backends": {
            kind: {
                "seen": sum(c.values()),
                "shares": {k: round(v / sum(c.values()), 3) for k, v in c.most_common()},
                "top_waits": events[kind].most_common(5),
            }
            for kind, c in counts.items()
        },
        "machine_cpu": {k: round(v, 3) for k, v in machine.items()},
        "pg_stat_io": io,
        "wal_mb": round((wal_after - wal_before) / 1e6, 1),
    }

    print(f"{report['seconds']} s, {samples} samples of the active backends")
    for kind, figures in sorted(report["backends"].items()):
        shares = ", ".join(f"{k} {v:.0%}" for k, v in figures["shares"].items())
        print(f"  {kind:<10} {figures['seen']:>6} backend-samples: {shares}")
        for wait, n in figures["top_waits"]:
            print(f"             {wait}: {n}")
    print("  machine CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in machine.items()))
    for backend, figures in sorted(io.items()):
        print(f"  pg_stat_io {backend}: " + ", ".join(f"{k} {v:,}" for k, v in figures.items()))
    print(f"  WAL written: {report['wal_mb']} MB")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
