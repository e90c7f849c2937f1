"""The benchmark command works and verifies at a tiny size. Its timings are
figures for people, never assertions here."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command

from profiles.erasure import erasure_plan

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def run_bench(out, **options):
    call_command(
        "benchmark_deletion",
        profiles=120,
        events_per_profile=2,
        requests=3,
        json_path=str(out),
        prefix=f"vero_bench_test_{os.getpid()}",
        **options,
    )
    return json.loads(out.read_text())


def render_table(path):
    """The README's tables, as scripts/bench_table.py renders them from a --json."""
    return subprocess.run(
        [sys.executable, settings.BASE_DIR / "scripts/bench_table.py", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_benchmark_deletion_measures_each_runner_count_every_round(tmp_path):
    result = run_bench(
        tmp_path / "bench.json",
        repeat=1,
        runners="1,2",
        no_http=True,
        no_naive=True,
        no_phases=True,
    )
    assert result["verified"] is True
    runs = result["runs"]
    assert set(runs) == {
        "ours",
        "ours_2_runners",
        "floor_loop",
        "floor_array",
        "floor_join",
        "floor_loop_receipt",
    }
    (two,) = runs["ours_2_runners"]
    assert (two["runners"], two["status"], two["deleted"]) == (2, "completed", 60)
    assert two["survivors_unchanged"] and not any(two["leftovers"].values())
    assert two["wal_mb"] > 0
    assert result["ratios"]["ours_2_runners_over_best_floor"] > 0
    table = render_table(tmp_path / "bench.json")
    assert "| ours, 2 parallel runners |" in table
    assert "WAL written" in table


def test_benchmark_deletion_runs_every_contender_in_rounds_and_verifies(tmp_path):
    result = run_bench(tmp_path / "bench.json", repeat=2, probed_rounds=2)
    assert result["verified"] is True
    runs = result["runs"]
    assert set(runs) == {"ours", "floor_loop", "floor_array", "floor_join", "floor_loop_receipt"}
    assert all(len(contender_runs) == 2 for contender_runs in runs.values())
    for run in runs["ours"]:
        assert run["status"] == "completed"
        assert run["total"] == run["deleted"] == 60
    # Each floor erased exactly the snapshot, verified like ours.
    for key in ("floor_loop", "floor_array", "floor_join", "floor_loop_receipt"):
        for run in runs[key]:
            assert run["profiles"] == 60 and run["events"] == 120
            assert run["survivors_unchanged"] and run["campaign_counts_unchanged"]
            assert not any(run["leftovers"].values())
    # The loop floor took the batches our job took in the same round.
    for ours, loop in zip(runs["ours"], runs["floor_loop"], strict=True):
        assert loop["batches"] == len(ours["batch_sizes"]) >= 1
    for summary in result["summary"].values():
        assert summary["n"] == 2 and summary["min"] <= summary["median"] <= summary["max"]
    # The exact-work floor wrote the receipt as ours does; the plain loop did not.
    assert all(run["receipt_entries"] == 60 for run in runs["floor_loop_receipt"])
    assert all(run["receipt_entries"] == 0 for run in runs["floor_loop"])
    ratios = result["ratios"]
    assert ratios["best_floor"] in ("floor_loop", "floor_array", "floor_join")
    assert ratios["ours_over_best_floor"] == ratios[f"ours_over_{ratios['best_floor']}"]
    assert ratios["ours_over_floor_loop_receipt"] > 0

    ours = result["ours"]
    # Ours also deletes the events the idle phase ingested for a doomed profile.
    assert result["ours_under_load"]["events"] >= 120
    kinds = {"progress", "segment page", "ingest outside", "ingest inside"}
    assert set(ours["latency"]) == kinds
    for figures in ours["latency"].values():
        assert figures["idle_errors"] == 0 and figures["during_errors"] == 0
        assert figures["idle"]["n"] == 3
    # The exact-work floor ran once more under the same probe, and verified.
    floor = result["floor_under_load"]
    assert floor["profiles"] == 60 and floor["receipt_entries"] == 60
    assert floor["survivors_unchanged"] and not any(floor["leftovers"].values())
    assert set(floor["latency"]) == kinds
    for figures in floor["latency"].values():
        assert figures["idle_errors"] == 0 and figures["during_errors"] == 0
        # A 60-profile floor may end before a request does: no "during" count asserted.
        assert figures["idle"]["n"] == 3 and "during" in figures
    # Ours and the floor were probed twice each, alternating; the median
    # run of each stands in the tables, every run is kept and verified.
    probed = result["probed_runs"]
    assert set(probed) == {"1", "floor"} and all(len(runs) == 2 for runs in probed.values())
    assert result["ours_under_load"] in probed["1"] and floor in probed["floor"]
    assert [run["status"] for run in probed["1"]] == ["completed", "completed"]
    p99 = result["ingestion_outside_p99"]
    assert len(p99["1"]["idle_ms"]) == len(p99["floor"]["during_ms"]) == 2
    assert all(ms > 0 for ms in p99["1"]["idle_ms"] + p99["floor"]["idle_ms"])
    # The time outside the batch calls is before the first, between, and
    # after the last batch: measured apart, they add up to it.
    for run in runs["ours"]:
        assert run["in_batch_calls_s"] > 0 and run["before_first_batch_ms"] >= 0
        assert run["after_last_batch_ms"] >= 0 and run["between_batches_s"] >= 0
        parts = (
            run["before_first_batch_ms"] / 1000
            + run["between_batches_s"]
            + run["after_last_batch_ms"] / 1000
        )
        assert parts == pytest.approx(run["outside_batch_calls_s"], abs=0.003)

    phases = result["phases"]
    assert phases["status"] == "completed" and phases["deleted"] == 60
    assert phases["survivors_unchanged"] and not any(phases["leftovers"].values())
    assert phases["batches"] >= 1 and phases["round_trips_per_batch"] > 0
    # A batch is one call of the batch function, and one commit.
    assert set(phases["phase_ms_per_batch"]) == {
        "batch: one call",
        "commit",
        "python (not in a statement)",
    }
    assert phases["round_trips_per_batch"] == 1

    # The README table is rendered from the JSON.
    table = render_table(tmp_path / "bench.json")
    assert "| ours (qcluster job) |" in table
    assert "PL/pgSQL" in table and "ours / best floor" in table
    assert "| ours: in batch calls; outside them;" in table
    # The probed rows, from figures a 60-profile deletion is too short to
    # give (no request is sent and answered within its span).
    floor["latency"]["ingest outside"]["idle"]["p99_ms"] = 5.0
    floor["latency"]["ingest outside"]["during"] = {"n": 9, "p99_ms": 10.0}
    loaded = result["ours_under_load_by_runners"]["1"]["latency"]["ingest outside"]
    loaded["idle"]["p99_ms"], loaded["during"] = 4.0, {"n": 9, "p99_ms": 12.0}
    (tmp_path / "probed.json").write_text(json.dumps(result))
    table = render_table(tmp_path / "probed.json")
    assert (
        "| floor: the loop + our receipt, pages+API busy (the median of 2 runs); ingestion "
        f"outside p99 idle -> during | {floor['seconds']:.2f} | 5.0 -> 10.0 ms (2.0x) | | |"
    ) in table
    seconds = result["ours_under_load_by_runners"]["1"]["seconds"]
    assert (
        "| ours, 1 runner, pages+API busy (the median of 2 runs); ingestion outside p99 "
        f"idle -> during | {seconds:.2f} | 4.0 -> 12.0 ms (3.0x) | | |"
    ) in table
    result["ingestion_outside_p99"]["1"] = {
        "idle_ms": [5.0, 6.0, 7.0],
        "during_ms": [10.0, 18.0, 14.0],
        "times": {"median": 2.0, "min": 2.0, "max": 3.0, "n": 3},
    }
    (tmp_path / "probed.json").write_text(json.dumps(result))
    table = render_table(tmp_path / "probed.json")
    assert (
        "| ours, 1 runner, pages+API busy, 3 runs: ingestion outside p99 during / idle "
        "(idle 5.0, 6.0, 7.0 ms; during 10.0, 18.0, 14.0 ms) | 2.0x | 2.0-3.0x | | |"
    ) in table


def test_the_floors_run_every_statement_of_the_erasure_plan():
    """The PL/pgSQL floors are generated from erasure_plan(), not a copy of it."""
    from django.db import connection

    from segments.deletion.benchmark_floors import array_block, erasure_steps, loop_block

    with connection.cursor() as cursor:
        steps = erasure_steps(cursor)
    plan = [step for step in erasure_plan() if step.about is None]
    labels = [label for label, _ in steps]
    assert labels == [step.label for step in plan] + ["profiles.profile"]
    loop = loop_block(job_id=1, sizes=[1000, 2000], steps=steps)
    whole = array_block(job_id=1, steps=steps)
    for step in plan:
        text = step.sql % {"ids": "ids"}
        assert text in loop and text in whole
    assert loop.count("COMMIT;") == 1 and "COMMIT" not in whole
    assert "FOR UPDATE" in loop and "FOR UPDATE" in whole


def test_benchmark_export_runs_and_checks_every_download(tmp_path):
    out = tmp_path / "export.json"
    call_command(
        "benchmark_export",
        sizes=[20, 50],
        runs=2,
        json_path=str(out),
        prefix=f"vero_bench_test_{os.getpid()}",
    )
    result = json.loads(out.read_text())
    assert result["runs"] == 2
    assert set(result["sizes"]) == {"20", "50"}
    for figures in result["sizes"].values():
        assert set(figures["growth_mb"]) == {"median", "min", "max"}
        assert figures["growth_mb"]["min"] <= figures["growth_mb"]["median"]


def test_the_median_probed_run_is_ranked_by_ingestions_slowdown_and_every_run_is_verified():
    from segments.deletion.benchmark import _median_probed_run, _p99_spread, verified

    def run(idle, during, **extra):
        figures = {"idle": {"p99_ms": idle}, "during": {"p99_ms": during}}
        return {"latency": {"ingest outside": figures}, **extra}

    # Ranked by during / idle (4x, 2x, 3x), not by the absolute p99.
    runs = [run(5.0, 20.0), run(10.0, 20.0), run(4.0, 12.0)]
    assert _median_probed_run(runs) is runs[2]
    # A run too short for a request to finish during it is left out.
    assert _median_probed_run([run(5.0, None), run(5.0, 10.0)]) is not None
    assert (
        _median_probed_run([run(5.0, None), run(5.0, 10.0)])["latency"]["ingest outside"]["during"][
            "p99_ms"
        ]
        == 10.0
    )
    spread = _p99_spread(runs)
    assert spread["idle_ms"] == [5.0, 10.0, 4.0] and spread["during_ms"] == [20.0, 20.0, 12.0]
    assert spread["times"] == {"median": 3.0, "min": 2.0, "max": 4.0, "n": 3}

    ok = {"survivors_unchanged": True, "campaign_counts_unchanged": True, "leftovers": {}}
    good = {**ok, "status": "completed", "deleted": 60, "skipped": 0, "total": 60}
    result = {"probed_runs": {"1": [good, good], "floor": [ok, ok]}}
    assert verified(result) is True
    # A probed run that is not the median one still fails the whole if it is wrong.
    result["probed_runs"]["floor"][1] = {**ok, "leftovers": {"profiles.event": 3}}
    assert verified(result) is False
    result["probed_runs"]["floor"][1] = ok
    result["probed_runs"]["1"][0] = {**good, "status": "failed"}
    assert verified(result) is False
