from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from messaging.models import Message, MessageActivity
from profiles.models import Profile
from segments.deletion import services as deletion
from segments.deletion.checks import deletion_verify
from segments.models import DeletionJob
from tests.segments.population import build_population
from tests.segments.test_deletion import run_to_end, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def population():
    return build_population(doomed=6, survivors=6, events_each=2)


def failed_checks(job):
    return {finding.check for finding in deletion_verify(job=job).failures}


def verify(job):
    out = StringIO()
    call_command("verify_deletion", str(job.pk), stdout=out)
    return out.getvalue()


def test_a_completed_job_passes_every_check(population, alice):
    job = start(population, alice)
    run_to_end(job)
    report = deletion_verify(job=job)
    assert report.ok, report.failures
    checks = {finding.check for finding in report.findings}
    assert {"profiles", "profiles.event", "profiles.subscriptionpreference"} <= checks
    assert {"segments.segmentmembership", "messaging.message", "messaging.messageactivity"} <= (
        checks
    )
    assert {"messaging.message anonymized", "messaging.messageactivity anonymized"} <= checks
    assert {"total", "handled", "completed"} <= checks


def test_the_command_prints_the_report_and_succeeds(population, alice):
    job = start(population, alice)
    run_to_end(job)
    output = verify(job)
    assert f"Deletion #{job.pk} of Trial users (completed): 6 of 6 handled" in output
    assert "ok    profiles: No profile of the snapshot exists." in output
    assert "FAIL" not in output
    assert output.rstrip().endswith("Every check passed.")


def test_a_job_marked_completed_without_deleting_fails(population, alice):
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(status="completed", deleted=6, cursor=10**9)
    assert failed_checks(job) == {
        "profiles",
        "profiles.event",
        "profiles.subscriptionpreference",
        "segments.segmentmembership",
        "messaging.message",
        "messaging.messageactivity",
    }


def test_the_command_exits_non_zero_and_names_the_failures(population, alice):
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(status="completed", deleted=6, cursor=10**9)
    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("verify_deletion", str(job.pk), stdout=out)
    assert failed.value.returncode == 1
    assert "checks failed" in str(failed.value)
    first = sorted(population.doomed)[0]
    assert f"FAIL  profiles: 6 profiles of the snapshot still exist (ids {first}, " in (
        out.getvalue()
    )


def test_an_unknown_job_is_an_error():
    with pytest.raises(CommandError, match="There is no deletion job 999"):
        call_command("verify_deletion", "999")


def test_a_stopped_job_may_leave_the_profiles_past_its_cursor(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
    deletion.deletion_cancel(job=job, user=alice)
    assert run_to_end(job) == "cancelled"
    assert Profile.objects.filter(pk__in=population.doomed).count() == 4
    assert deletion_verify(job=job).ok


def test_a_profile_left_behind_the_cursor_fails(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="failed", cursor=sorted(population.doomed)[3]
    )
    assert "profiles" in failed_checks(job)
    assert "handled" in failed_checks(job)


def test_personal_data_left_on_an_anonymized_message_fails(population, alice):
    job = start(population, alice)
    run_to_end(job)
    Message.objects.filter(profile=None).update(recipient_email="someone@example.com")
    assert failed_checks(job) == {"messaging.message anonymized"}


def test_personal_data_left_on_anonymized_activity_fails(population, alice):
    job = start(population, alice)
    run_to_end(job)
    first = MessageActivity.objects.filter(profile=None).first()
    MessageActivity.objects.filter(pk=first.pk).update(user_agent="Mozilla/5.0")
    assert failed_checks(job) == {"messaging.messageactivity anonymized"}
    MessageActivity.objects.filter(pk=first.pk).update(user_agent="", ip_address="192.0.2.1")
    assert failed_checks(job) == {"messaging.messageactivity anonymized"}


def test_counters_that_disagree_with_the_snapshot_fail(population, alice):
    job = start(population, alice)
    run_to_end(job)
    DeletionJob.objects.filter(pk=job.pk).update(deleted=5)
    assert failed_checks(job) == {"handled", "completed"}
    DeletionJob.objects.filter(pk=job.pk).update(deleted=6, total=7)
    assert failed_checks(job) == {"total"}


def test_every_table_that_points_at_a_profile_is_checked(population, alice):
    job = start(population, alice)
    run_to_end(job)
    checked = {finding.check for finding in deletion_verify(job=job).findings}
    for relation in Profile._meta.related_objects:
        assert relation.related_model._meta.label_lower in checked
