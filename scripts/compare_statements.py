"""Ours against the exact-work floor, statement by statement.

`benchmark_deletion` says how long ours and the floors take; this says where
the difference is. It builds the benchmark's dataset (or reuses a kept
template), then alternates, `--repeat` times, on fresh copies:

- ours: the job as the UI starts it, run by a real `qcluster`;
- the loop + our receipt: the same statements from `erasure_plan()` and the
  same receipt in a PL/pgSQL loop over the batch sizes ours just used.

After each run it reads `pg_stat_statements` for that copy (with
`pg_stat_statements.track = 'all'`, the statements inside PL/pgSQL are
counted one by one) and prints, per statement of a batch, the milliseconds
each side spent, and ours' time outside its batch calls (commits, the
worker's Python, the continuation task).

pg_stat_statements must be loaded by the server, which needs a restart:

    ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';
    ALTER SYSTEM SET pg_stat_statements.track = 'all';
    -- restart the server; afterwards, RESET both and restart again

    .venv/bin/python scripts/compare_statements.py --profiles 1000000 --json out.json

Tracking every nested statement costs both sides alike; do not run the
deletion benchmark with it loaded.
"""

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STATEMENTS = """
SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g')
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# What tells ours' statements from the floor's apart, and is not the work.
_NORMALIZE = [
    (re.compile(r"\$\d+"), "$"),
    (re.compile(r'"'), ""),
    (re.compile(r"\b(erase_ids|v_locked|v_ids|batch)\b"), "ids"),
    (re.compile(r"\bp_job\b"), "$"),
]
# A batch's own statements: the erasure, the lock, the receipt; and, in
# ours, every statement of the batch function (they name its variables).
_BATCH_WORK = re.compile(
    r"^(DELETE FROM|UPDATE \"?(messaging|django_admin_log)|WITH gone AS|"
    r"INSERT INTO \"?segments_deletionreceiptbatch|SELECT coalesce\(array_agg\(id ORDER BY id\))",
    re.IGNORECASE,
)
_FUNCTION_VARIABLE = re.compile(r"\b[vp]_[a-z_]+\b")
_WRAPPER = re.compile(r"pg_temp\.vero_")


def normalized(query: str) -> str:
    for pattern, replacement in _NORMALIZE:
        query = pattern.sub(replacement, query)
    return query.strip()


def statements(params) -> dict:
    """{normalized statement: [calls, ms]} of one database's batch work."""
    import psycopg

    totals = {}
    with psycopg.connect(**params, autocommit=True) as conn:
        for calls, ms, _rows, query in conn.execute(STATEMENTS):
            if not (_BATCH_WORK.match(query) or _FUNCTION_VARIABLE.search(query)):
                continue
            if _WRAPPER.search(query):
                continue  # the erasure function's call: its statements are counted one by one
            key = normalized(query)
            entry = totals.setdefault(key, [0, 0.0])
            entry[0] += calls
            entry[1] += ms
    return totals


def whole(params, pattern: str) -> float:
    """Milliseconds spent in the statements matching ``pattern`` (the batch
    function's calls, or the floor's DO block)."""
    import psycopg

    with psycopg.connect(**params, autocommit=True) as conn:
        rows = conn.execute(STATEMENTS).fetchall()
    return sum(ms for _, ms, _, query in rows if re.search(pattern, query))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--events-per-profile", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--prefix", default="vero_statements")
    parser.add_argument("--keep", action="store_true", help="Keep the template for next time.")
    parser.add_argument("--reuse", action="store_true", help="Use the template a --keep run left.")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument(
        "--report", metavar="JSON", help="Only print the report of an earlier --json."
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1.")
    if args.profiles < 10 or args.events_per_profile < 0:
        parser.error("--profiles must be at least 10 and --events-per-profile at least 0.")
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)))
        return

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vero_admin.settings")
    import django

    django.setup()
    from segments.deletion import benchmark as bench

    config = bench.BenchConfig(
        profiles=args.profiles,
        events_per_profile=args.events_per_profile,
        http=False,
        naive=False,
        phases=False,
        prefix=args.prefix,
    )
    dbs = bench.Databases(config.prefix)
    with dbs._admin() as admin:
        loaded = admin.execute("SHOW shared_preload_libraries").fetchone()[0]
        track = (
            admin.execute(
                "SELECT setting FROM pg_settings WHERE name = 'pg_stat_statements.track'"
            ).fetchone()
            if "pg_stat_statements" in loaded
            else None
        )
    if "pg_stat_statements" not in loaded or not track or track[0] != "all":
        sys.exit(
            "pg_stat_statements is not loaded with track = 'all' on this server; see the "
            "top of this script for the two settings and the restart it needs."
        )
    if not args.reuse:
        bench.build_template(config, dbs, print)
    with dbs.use(dbs.template):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    run_name = f"{config.prefix}_run"
    rounds = []
    try:
        for i in range(args.repeat):
            print(f"Round {i + 1} of {args.repeat}")
            ours = bench.run_ours(config, dbs, run_name, print, http=False)
            params = dbs._params(run_name)
            ours_figures = {
                "seconds": ours["seconds"],
                "calls_ms": whole(params, r"pg_temp\.vero_batch_"),
                "statements": statements(params),
                **{k: ours.get(k) for k in ("in_batch_calls_s", "outside_batch_calls_s")},
                "between_batches_median_ms": ours.get("between_batches_median_ms"),
            }
            dbs.drop(run_name)
            floor = bench.run_floor_plpgsql(
                dbs, run_name, print, batch_sizes=ours["batch_sizes"], receipt=True
            )
            floor_figures = {
                "seconds": floor["seconds"],
                "calls_ms": whole(params, r"^DO \$bench\$"),
                "statements": statements(params),
            }
            dbs.drop(run_name)
            rounds.append({"ours": ours_figures, "floor": floor_figures})
    finally:
        dbs.drop(run_name)
        if not args.keep:
            dbs.drop(dbs.template)

    print()
    print(report(rounds))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(rounds, f, indent=2)
        print(f"\nWrote {args.json_path}")


def report(rounds) -> str:
    def median(values):
        return statistics.median(values) if values else 0.0

    lines = [
        f"{len(rounds)} rounds, medians; ms summed over the run",
        f"{'':60}{'ours':>10}{'floor':>10}",
        f"{'job / DO block, seconds':60}"
        f"{median([r['ours']['seconds'] for r in rounds]):>10.2f}"
        f"{median([r['floor']['seconds'] for r in rounds]):>10.2f}",
        f"{'in the batch calls / the whole DO block, ms':60}"
        f"{median([r['ours']['calls_ms'] for r in rounds]):>10.0f}"
        f"{median([r['floor']['calls_ms'] for r in rounds]):>10.0f}",
        f"{'ours outside its batch calls, s':60}"
        f"{median([r['ours']['outside_batch_calls_s'] or 0 for r in rounds]):>10.2f}",
        f"{'ours between batches, median ms':60}"
        f"{median([r['ours']['between_batches_median_ms'] or 0 for r in rounds]):>10.1f}",
        "",
    ]
    # Keys from an older --json are normalized again, so they pair up too.
    per_round = [
        {side: _merged(r[side]["statements"]) for side in ("ours", "floor")} for r in rounds
    ]
    keys = {k for r in per_round for side in r.values() for k in side}

    def ms(side, key):
        return median([r[side].get(key, 0.0) for r in per_round])

    for key in sorted(keys, key=lambda k: -max(ms("ours", k), ms("floor", k))):
        if max(ms("ours", key), ms("floor", key)) < 0.5:
            continue
        lines.append(f"{key[:58]:60}{ms('ours', key):>10.0f}{ms('floor', key):>10.0f}")
    return "\n".join(lines)


def _merged(statements: dict) -> dict:
    merged = {}
    for key, (_calls, ms) in statements.items():
        if _WRAPPER.search(key):
            continue  # an older --json kept the erasure function's call
        merged[normalized(key)] = merged.get(normalized(key), 0.0) + ms
    return merged


if __name__ == "__main__":
    main()
