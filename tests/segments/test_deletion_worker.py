"""The deletion job through a real qcluster process, as the UI starts it."""

import pytest

from segments.deletion.services import deletion_start
from segments.models import DeletionJob
from tests.segments.population import activity_counts, build_population, rows_of
from tests.segments.test_deletion import assert_erased
from tests.workers import QCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_runs_the_job_to_completion(alice):
    population = build_population(doomed=40, survivors=40, events_each=2)
    survivors_before = rows_of(population.survivors)
    counts_before = activity_counts()
    job = deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=40
    ).job

    with QCluster() as cluster:
        done = wait_for(
            lambda: DeletionJob.objects.filter(pk=job.pk, status="completed").first(),
            timeout=60,
            message="the job to complete",
        )
        assert "Traceback" not in cluster.log(), cluster.log()

    assert (done.total, done.deleted, done.skipped) == (40, 40, 0)
    assert_erased(population.doomed)
    assert rows_of(population.survivors) == survivors_before
    assert activity_counts() == counts_before
