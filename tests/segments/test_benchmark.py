"""The benchmark command works and verifies at a tiny size. Its timings are
figures for people, never assertions here."""

import json
import os

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_benchmark_deletion_runs_and_verifies(tmp_path):
    out = tmp_path / "bench.json"
    call_command(
        "benchmark_deletion",
        profiles=120,
        events_per_profile=2,
        requests=3,
        json_path=str(out),
        prefix=f"vero_bench_test_{os.getpid()}",
    )
    result = json.loads(out.read_text())
    assert result["verified"] is True
    ours = result["ours"]
    assert ours["status"] == "completed"
    assert ours["total"] == ours["deleted"] == 60
    assert result["floor"]["profiles"] == 60
    # Ours also deletes the events the idle phase ingested for a doomed profile.
    assert result["floor"]["events"] == 120 and ours["events"] >= 120
    assert set(ours["latency"]) == {"progress", "segment page", "ingest outside", "ingest inside"}
    for figures in ours["latency"].values():
        assert figures["idle_errors"] == 0 and figures["during_errors"] == 0


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
