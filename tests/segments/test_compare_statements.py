"""scripts/compare_statements.py pairs ours' statements with the floor's,
and says so plainly when the server cannot count them."""

import importlib.util
import subprocess
import sys

from django.conf import settings

SCRIPT = settings.BASE_DIR / "scripts" / "compare_statements.py"
spec = importlib.util.spec_from_file_location("compare_statements", SCRIPT)
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def test_ours_and_the_floors_statements_are_paired_whatever_their_variables_are_called():
    pairs = [
        (
            "DELETE FROM profiles_profile WHERE id = ANY(erase_ids)",
            "DELETE FROM profiles_profile WHERE id = ANY(ids)",
        ),
        (
            'INSERT INTO "segments_deletionreceiptbatch" (job_id) SELECT p_job, $3',
            'INSERT INTO "segments_deletionreceiptbatch" (job_id) SELECT $5, $6',
        ),
        (
            "SELECT coalesce(array_agg(id ORDER BY id), $26) FROM profiles_profile "
            "WHERE id = ANY(v_ids)",
            "SELECT coalesce(array_agg(id ORDER BY id), $4) FROM profiles_profile "
            "WHERE id = ANY(batch)",
        ),
    ]
    for ours, floor in pairs:
        assert compare.normalized(ours) == compare.normalized(floor)
    # Different statements stay apart.
    assert compare.normalized(pairs[0][0]) != compare.normalized(
        "DELETE FROM profiles_event WHERE profile_id = ANY(ids)"
    )


def test_the_report_puts_each_statement_of_ours_beside_the_floors():
    key = compare.normalized("DELETE FROM profiles_event WHERE profile_id = ANY(ids)")
    rounds = [
        {
            "ours": {
                "seconds": 25.0 + i,
                "calls_ms": 24000.0,
                "statements": {key: [100, 2500.0 + i]},
                "outside_batch_calls_s": 0.9,
                "between_batches_median_ms": 6.8,
            },
            "floor": {"seconds": 24.0, "calls_ms": 24200.0, "statements": {key: [100, 2400.0]}},
        }
        for i in range(3)
    ]
    report = compare.report(rounds)
    assert "3 rounds" in report
    line = next(row for row in report.splitlines() if row.startswith("DELETE FROM profiles_event"))
    assert line.split()[-2:] == ["2501", "2400"]
    assert "26.00" in report and "24.00" in report  # the job's median, the floor's


def test_without_pg_stat_statements_it_says_what_to_set_and_changes_nothing():
    result = subprocess.run(
        [sys.executable, SCRIPT, "--profiles", "100"],
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=120,
    )
    assert result.returncode == 1
    assert "pg_stat_statements is not loaded with track = 'all'" in result.stderr
    assert "Building" not in result.stdout
