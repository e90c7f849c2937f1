from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command

from messaging.models import Message, MessageActivity
from profiles.models import Profile
from segments.deletion import services as deletion
from segments.deletion.checks import deletion_verify
from segments.models import DeletionJob
from tests.messaging.factories import MessageActivityFactory, MessageFactory
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
    assert {"total", "handled", "completed", "admin log"} <= checks


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
        "receipt",
        "receipt file",
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
    assert failed_checks(job) == {"handled", "completed", "receipt"}
    DeletionJob.objects.filter(pk=job.pk).update(deleted=6, total=7)
    assert failed_checks(job) == {"total"}


def test_every_table_that_points_at_a_profile_is_checked(population, alice):
    job = start(population, alice)
    run_to_end(job)
    checked = {finding.check for finding in deletion_verify(job=job).findings}
    for relation in Profile._meta.related_objects:
        assert relation.related_model._meta.label_lower in checked


# --- copies of personal data the job must not leave ------------------------------------


def _an_erased_click():
    return MessageActivity.objects.filter(profile=None, kind=MessageActivity.CLICK).first()


def test_a_query_string_left_on_an_erased_click_fails(population, alice):
    job = start(population, alice)
    run_to_end(job)
    MessageActivity.objects.filter(pk=_an_erased_click().pk).update(
        url="https://x.test/a?email=someone@example.com&token=s3cret"
    )
    assert failed_checks(job) == {"messaging.messageactivity anonymized"}


def test_activity_left_unlinked_on_an_erased_persons_message_fails(population, alice):
    job = start(population, alice)
    run_to_end(job)
    message = Message.objects.filter(profile=None).first()
    MessageActivityFactory(message=message, profile=None, ip_address="192.0.2.1")
    assert failed_checks(job) == {"messaging.messageactivity anonymized"}


def test_an_admin_log_entry_naming_an_erased_profile_fails(population, alice, admin_user):
    job = start(population, alice)
    run_to_end(job)
    LogEntry.objects.create(
        user=admin_user,
        content_type=ContentType.objects.get_for_model(Profile),
        object_id=str(population.doomed[0]),
        object_repr="someone@example.com",
        action_flag=CHANGE,
    )
    assert failed_checks(job) == {"admin log"}


def test_an_earlier_admin_log_entry_naming_an_erased_persons_message_fails(
    population, alice, admin_user
):
    job = start(population, alice)
    run_to_end(job)
    LogEntry.objects.create(
        user=admin_user,
        content_type=ContentType.objects.get_for_model(Message),
        object_id=str(Message.objects.filter(profile=None).first().pk),
        object_repr="Launch to someone@example.com",
        action_flag=CHANGE,
        action_time=job.created_at,
    )
    assert failed_checks(job) == {"admin log"}


def test_the_admin_log_of_a_completed_job_names_nobody(population, alice, admin_user):
    person = Profile.objects.get(pk=population.doomed[0])
    LogEntry.objects.log_actions(
        user_id=admin_user.pk, queryset=[person, person.messages.first()], action_flag=CHANGE
    )
    job = start(population, alice)
    run_to_end(job)
    assert deletion_verify(job=job).ok


def test_rows_the_job_did_not_touch_cannot_fail_it(population, alice):
    """Another person's click with a query string, an open of a survivor's
    message without its own link, a message to an address no profile has:
    none is this job's, so none fails it."""
    job = start(population, alice)
    run_to_end(job)
    survivor = Profile.objects.get(pk=population.survivors[0])
    survivors_message = survivor.messages.first()
    MessageActivityFactory(
        message=survivors_message,
        kind=MessageActivity.CLICK,
        url="https://x.test/a?email=survivor@example.com",
    )
    MessageActivityFactory(message=survivors_message, profile=None, ip_address="192.0.2.9")
    MessageFactory(profile=None, recipient_email="walk-in@example.com")
    assert deletion_verify(job=job).ok
