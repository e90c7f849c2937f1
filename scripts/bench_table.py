#!/usr/bin/env python3
"""Render the README's deletion benchmark tables from `benchmark_deletion --json`.

    .venv/bin/python scripts/bench_table.py bench-100k.json [--phases]

Prints Markdown: ours and each floor (median, spread, profiles/s, ours / it),
ours against the best floor, and with --phases where a batch of ours goes.
Plain Python, no Django: it reads only the JSON.
"""

import argparse
import json
import statistics

LABELS = {
    "ours": "ours (qcluster job)",
    "floor_loop": "floor: PL/pgSQL loop, our batch sizes, a COMMIT each",
    "floor_array": "floor: one transaction over an id array",
    "floor_join": "floor: one transaction of joins",
}
# Beside the floors, never the best floor (it does more than erase); in runs since it existed.
EXACT_WORK = {"floor_loop_receipt": "floor: the loop + our receipt (our exact work)"}


def contenders(result) -> list[str]:
    s, r, ours = result["summary"], result["ratios"], result["ours"]
    total = ours["total"]
    lines = [
        f"| {result['config']['profiles']:,} profiles, {total:,} deleted, "
        f"{s['ours']['n']} rounds | median s | min-max s | profiles/s | ours / it |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {**LABELS, **result.get("labels", {}), **EXACT_WORK}
    runner_rows = [key for key in labels if key.startswith("ours_")]
    exact = [key for key in EXACT_WORK if key in s]
    for key in [*LABELS, *exact, *runner_rows]:
        label, f = labels[key], s[key]
        if key == "ours":
            ratio = ""
        elif key in runner_rows:
            ratio = f"{r[f'{key}_over_best_floor']:.2f} (over the best floor)"
        else:
            ratio = f"{r[f'ours_over_{key}']:.2f}"
        if key == r["best_floor"]:
            label, ratio = f"**{label}** (best floor)", f"**{ratio}**"
        lines.append(
            f"| {label} | {f['median']:.2f} | {f['min']:.2f}-{f['max']:.2f} | "
            f"{round(total / f['median']):,} | {ratio} |"
        )
    lines.append(f"| **ours / best floor** (medians) | **{r['ours_over_best_floor']:.2f}** | | | |")
    rounds = list(zip(*(result["runs"][key] for key in LABELS), strict=True))
    paired = [
        f"{ours['seconds'] / min(f['seconds'] for f in floors):.2f}" for ours, *floors in rounds
    ]
    lines.append(f"| ours / that round's fastest floor, by round | {', '.join(paired)} | | | |")
    gaps = [
        f"{ours['mean_batch_ms'] - loop['mean_batch_ms']:.0f}"
        for ours, loop, *_ in rounds
        if ours.get("mean_batch_ms") and loop.get("mean_batch_ms")
    ]
    if gaps:
        lines.append(
            f"| ours' mean batch minus the loop floor's (same sizes), ms, round by round "
            f"| {', '.join(gaps)} | | | |"
        )
    loaded, naive = result.get("ours_under_load"), result.get("naive")
    probed = list(result.get("ours_under_load_by_runners", {}).items())
    if loaded and not probed:  # runs from before the runner counts were probed
        lines.append(f"| ours with pages+API busy (1 run) | {loaded['seconds']:.2f} | | | |")
    floor = result.get("floor_under_load")
    if floor:
        probed.append(("floor", floor))
    for n, run in probed:
        outside = run["latency"].get("ingest outside", {})
        if n == "1" and not floor:
            # Older runs: one runner's ingestion figures were not in this table.
            lines.append(f"| ours with pages+API busy (1 run) | {run['seconds']:.2f} | | | |")
            continue
        if not outside.get("during", {}).get("p99_ms") or not outside["idle"].get("p99_ms"):
            continue  # a run too short for a request to finish during it
        idle, during = outside["idle"]["p99_ms"], outside["during"]["p99_ms"]
        who = (
            "floor: the loop + our receipt"
            if n == "floor"
            else f"ours, {n} runner{'s' if n != '1' else ''}"
        )
        times = f" ({during / idle:.1f}x)" if floor else ""  # since the floor was probed
        runs = len(result.get("probed_runs", {}).get(n, [])) or 1
        which = "1 run" if runs == 1 else f"the median of {runs} runs"
        lines.append(
            f"| {who}, pages+API busy ({which}); ingestion outside p99 idle -> during "
            f"| {run['seconds']:.2f} | {idle} -> {during} ms{times} | | |"
        )
    for key, figures in result.get("ingestion_outside_p99", {}).items():
        t = figures["times"]
        if not t or t["n"] < 2:
            continue
        who = "floor: the loop + our receipt" if key == "floor" else f"ours, {key} runner"
        who += "s" if key not in ("1", "floor") else ""
        idle = ", ".join(str(x) for x in figures["idle_ms"])
        during = ", ".join(str(x) for x in figures["during_ms"])
        lines.append(
            f"| {who}, pages+API busy, {t['n']} runs: ingestion outside p99 during / idle "
            f"(idle {idle} ms; during {during} ms) | {t['median']:.1f}x | "
            f"{t['min']:.1f}-{t['max']:.1f}x | | |"
        )
    if naive:
        lines.append(
            f"| naive ORM delete (1 run, peak RSS {naive['peak_rss_mb']:.0f} MB) | "
            f"{naive['seconds']:.2f} | | | |"
        )
    if "wal_mb" in ours:
        lines.append(
            f"| ours: WAL written (median run; pg_stat_wal) | {ours['wal_mb']:.0f} MB; "
            f"{ours['pg_stat_wal_mb']:.0f} MB | | | |"
        )
    lines.append(
        f"| ours: batches; mean, longest batch; worker peak RSS (median run) | "
        f"{ours['batches']}; {ours['mean_batch_ms']}, {ours['longest_batch_ms']} ms; "
        f"{ours['worker_peak_rss_mb']} MB | | | |"
    )
    if ours.get("outside_batch_calls_s") is not None:
        # One batch has no "between".
        median = ours["between_batches_median_ms"]
        longest = ours["between_batches_longest_ms"]
        lines.append(
            f"| ours: in batch calls; outside them; between batches median, longest "
            f"(median run) | {ours['in_batch_calls_s']:.2f} s; {ours['outside_batch_calls_s']:.2f}"
            f" s; {'-' if median is None else median}, {'-' if longest is None else longest} ms "
            "| | | |"
        )
    for key in runner_rows:
        runs = result["runs"][key]
        if runs and "wal_mb" in runs[0]:
            lines.append(
                f"| {labels[key]}: WAL written (median of rounds) | "
                f"{statistics.median(x['wal_mb'] for x in runs):.0f} MB | | | |"
            )
    return lines


def phases(result) -> list[str]:
    p = result.get("phases")
    if not p:
        return []
    loop = [r for r in result["runs"]["floor_loop"] if r.get("batches")]
    lines = [
        "",
        f"| a batch of ours ({p['batches']} batches, mean {p['mean_batch_ms']} ms, "
        f"{p['round_trips_per_batch']} statements) | ms per batch |",
        "|---|---:|",
    ]
    for phase, ms in p["phase_ms_per_batch"].items():
        lines.append(f"| {phase} | {ms:.2f} |")
    if "batch: one call" not in p["phase_ms_per_batch"]:
        # Before a batch was one call, its statements could be told apart.
        lines += [
            f"| *sum: erasure statements* | {p['erase_ms_per_batch']:.2f} |",
            f"| *sum: locking (profile locks, SET CONSTRAINTS when not in the erasure call)* | "
            f"{p['locking_ms_per_batch']:.2f} |",
            f"| *sum: bookkeeping (job row, ids, counters, batch log, checks)* | "
            f"{p['bookkeeping_ms_per_batch']:.2f} |",
        ]
    lines += [
        f"| one round trip (`SELECT 1`, median) | {p['round_trip_ms']:.3f} |",
        f"| end of the job (recounts), once | {p['end_of_job_ms']:.1f} |",
    ]
    if loop:
        per = [
            (
                r["mean_batch_ms"],
                sum(r["step_ms"].values()) / r["batches"],
                r["lock_ms"] / r["batches"],
            )
            for r in loop
        ]
        batch, erase, lock = (statistics.median(x[i] for x in per) for i in range(3))
        lines += [
            f"| the loop floor, same batch sizes: whole batch | {batch:.2f} |",
            f"| the loop floor: erasure statements / lock | {erase:.2f} / {lock:.2f} |",
        ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_path")
    parser.add_argument("--phases", action="store_true", help="Also where a batch goes.")
    args = parser.parse_args(argv)
    with open(args.json_path) as f:
        result = json.load(f)
    lines = contenders(result)
    if args.phases:
        lines += phases(result)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
