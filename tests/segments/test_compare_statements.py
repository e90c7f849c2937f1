"""scripts/compare_statements.py pairs ours' statements with the floor's,
and says so plainly when the server cannot count them."""

import importlib.util
import subprocess
import sys

import pytest
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
            # As pg_stat_statements shows them (docs/benchmarks/deletion-1m-statements.json).
            'UPDATE "messaging_message" SET "profile_id" = $2, "recipient_email" = $3, '
            '"anonymized_on" = CURRENT_DATE WHERE "profile_id" = ANY(erase_ids)',
            'UPDATE "messaging_message" SET "profile_id" = $5, "recipient_email" = $6, '
            '"anonymized_on" = CURRENT_DATE WHERE "profile_id" = ANY(ids)',
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


def test_the_erasure_functions_call_is_not_counted_beside_its_own_statements():
    statements = {
        "SELECT * FROM pg_temp.vero_erase_5db380556d1af88d(v_locked)": [105, 22543.0],
        "DELETE FROM profiles_profile WHERE id = ANY(erase_ids)": [105, 15050.0],
    }
    assert compare._merged(statements) == {
        "DELETE FROM profiles_profile WHERE id = ANY(ids)": 15050.0
    }


@pytest.mark.django_db
def test_without_pg_stat_statements_it_says_what_to_set_and_changes_nothing():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_preload_libraries")
        if "pg_stat_statements" in cursor.fetchone()[0]:
            pytest.skip("this server has pg_stat_statements loaded")
    result = subprocess.run(
        [sys.executable, SCRIPT, "--profiles", "100"],
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=120,
    )
    assert result.returncode == 1
    assert "pg_stat_statements is not loaded with track = 'all'" in result.stderr
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'vero_statements%%'")
        assert cursor.fetchone()[0] == 0


def test_bad_arguments_are_refused_before_anything_is_built(capsys):
    for argv in (["--repeat", "0"], ["--profiles", "5"], ["--events-per-profile", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            compare.main(argv)
        assert exit_.value.code == 2
        assert "must be at least" in capsys.readouterr().err
