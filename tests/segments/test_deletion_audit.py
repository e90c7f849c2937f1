"""Who confirmed, cancelled and resumed which deletion: the job is the audit
record, and each action through the pages is also logged with its user."""

import pytest

from segments.deletion import services as deletion
from segments.deletion.selectors import segment_membership_token
from segments.models import DeletionJob
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db


@pytest.fixture
def population():
    return build_population(doomed=4, survivors=2, events_each=1)


def confirm(client, population):
    return client.post(
        f"/segments/{population.segment.pk}/delete-profiles/",
        {
            "typed_name": population.segment.name,
            "expected_count": 4,
            "membership_token": segment_membership_token(population.segment),
        },
    )


def job_url(job, action):
    return f"/segments/{job.segment_id}/deletions/{job.pk}/{action}/"


def test_confirming_records_and_logs_who_confirmed_what(editor_client, population, caplog):
    with caplog.at_level("INFO", logger="segments.deletion.services"):
        confirm(editor_client, population)
    job = DeletionJob.objects.get()
    assert (job.created_by_username, job.segment_name, job.total) == ("alice", "Trial users", 4)
    assert job.created_at is not None
    assert f"Deletion job {job.pk} confirmed by alice: 4 profiles of segment 'Trial users'" in (
        caplog.text
    )


def test_cancelling_is_logged_and_the_job_keeps_the_counts(editor_client, population, caplog):
    confirm(editor_client, population)
    job = DeletionJob.objects.get()
    deletion.deletion_run_batch(job_id=job.pk, batch_size=1)
    with caplog.at_level("INFO", logger="segments.deletion.services"):
        editor_client.post(job_url(job, "cancel"))
    assert f"Deletion job {job.pk}: cancel requested by alice" in caplog.text
    deletion.deletion_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.deleted, job.total) == ("cancelled", 1, 4)
    assert job.finished_at is not None


def test_resuming_is_logged(editor_client, population, caplog):
    confirm(editor_client, population)
    job = DeletionJob.objects.get()
    DeletionJob.objects.filter(pk=job.pk).update(status="failed", error="boom")
    with caplog.at_level("INFO", logger="segments.deletion.services"):
        editor_client.post(job_url(job, "resume"))
    assert f"Deletion job {job.pk} resumed by alice" in caplog.text


def test_resuming_is_recorded_on_the_job_and_shown_on_the_deletions_page(editor_client, population):
    confirm(editor_client, population)
    job = DeletionJob.objects.get()
    DeletionJob.objects.filter(pk=job.pk).update(status="failed", error="boom")
    editor_client.post(job_url(job, "resume"))
    job.refresh_from_db()
    assert job.resumed_by_username == "alice" and job.resumed_at is not None
    assert job.created_by_username == "alice"  # confirming stays recorded beside it
    html = editor_client.get("/segments/deletions/").content.decode()
    assert 'data-testid="deletion-resumed">resumed by alice' in html


def test_a_refused_action_is_logged_by_django(viewer_client, population, alice, caplog):
    job = deletion.deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=4
    ).job
    with caplog.at_level("WARNING", logger="django.request"):
        assert viewer_client.post(job_url(job, "cancel")).status_code == 403
    assert f"Forbidden (Permission denied): /segments/{job.segment_id}/deletions/{job.pk}" in (
        caplog.text
    )


def test_the_audit_record_cannot_be_edited_in_the_admin(client, admin_user, population, alice):
    job = deletion.deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=4
    ).job
    client.force_login(admin_user)
    assert client.get(f"/admin/segments/deletionjob/{job.pk}/change/").status_code == 200
    client.post(f"/admin/segments/deletionjob/{job.pk}/delete/", {"post": "yes"})
    assert DeletionJob.objects.filter(pk=job.pk).exists()
