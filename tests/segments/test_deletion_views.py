import pytest
from django.test import Client

from profiles.models import Profile
from segments.deletion.selectors import segment_membership_token
from segments.models import DeletionJob
from tests.segments.factories import SegmentFactory
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db


@pytest.fixture
def population():
    return build_population(doomed=4, survivors=4, events_each=1)


def url(population):
    return f"/segments/{population.segment.pk}/delete-profiles/"


def confirm(client, population, typed="Trial users", expected=4, token=None, **extra):
    population.segment.refresh_from_db()
    if token is None:
        token = segment_membership_token(population.segment)
    data = {"typed_name": typed, "expected_count": expected, "membership_token": token}
    return client.post(url(population), data, **extra)


def nothing_deleted(population):
    return not DeletionJob.objects.exists() and Profile.objects.filter(
        pk__in=population.doomed
    ).count() == len(population.doomed)


def test_the_dialog_shows_what_will_and_will_not_be_deleted(editor_client, population):
    response = editor_client.get(url(population), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "This cannot be undone" in html
    assert "Delete 4 profiles?" in html
    assert "event history (4 events)" in html
    assert "subscription status and preferences (8 preferences)" in html
    assert "anonymized" in html and "the segment itself" in html
    assert "Exclude from all campaigns instead" in html
    assert 'data-confirm-match="Trial users"' in html
    assert nothing_deleted(population)


def test_the_dialog_offers_a_refresh_when_the_count_is_stale(editor_client, population):
    population.segment.last_refreshed_at = None
    population.segment.save()
    html = editor_client.get(url(population)).content.decode()
    assert "Refresh the segment first" in html


def test_without_htmx_the_dialog_is_a_page(editor_client, population):
    response = editor_client.get(url(population))
    assert response.status_code == 200
    assert b"<dialog" not in response.content and b"Delete Profiles" in response.content


def test_confirming_with_the_exact_name_starts_the_job(
    editor_client, population, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = confirm(editor_client, population)
    assert response.status_code == 302
    assert response["Location"] == f"/segments/{population.segment.pk}/#deletion"
    job = DeletionJob.objects.get()
    assert (job.total, job.status, job.created_by_username) == (4, "pending", "alice")
    assert len(callbacks) == 1


def test_confirming_through_htmx_redirects_the_page(editor_client, population):
    response = confirm(editor_client, population, headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response["HX-Redirect"] == f"/segments/{population.segment.pk}/"


@pytest.mark.parametrize("typed", ["trial users", "Trial  users", "Trial users ", "", "Trial"])
def test_a_wrong_name_re_renders_the_dialog_with_an_error(editor_client, population, typed):
    response = confirm(editor_client, population, typed=typed, headers={"HX-Request": "true"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "<dialog" in html and "Nothing was deleted" in html
    assert nothing_deleted(population)


def test_a_changed_count_asks_to_review_again(editor_client, population):
    response = confirm(editor_client, population, expected=3)
    assert response.status_code == 409
    assert b"it now has 4 profiles (the dialog showed 3)" in response.content
    assert b'value="4"' in response.content  # confirming again confirms the new number
    assert nothing_deleted(population)


def test_a_bad_expected_count_is_refused(editor_client, population):
    response = confirm(editor_client, population, expected="lots")
    assert response.status_code == 400
    assert nothing_deleted(population)


def test_a_second_confirmation_shows_the_running_job(editor_client, population):
    confirm(editor_client, population)
    response = confirm(editor_client, population)
    assert response.status_code == 302
    assert DeletionJob.objects.count() == 1


def test_a_viewer_cannot_open_or_confirm_the_dialog(viewer_client, population):
    assert viewer_client.get(url(population)).status_code == 403
    assert confirm(viewer_client, population).status_code == 403
    assert nothing_deleted(population)


def test_an_outsider_cannot_confirm(outsider_client, population):
    assert confirm(outsider_client, population).status_code == 403
    assert nothing_deleted(population)


def test_an_anonymous_user_is_sent_to_login(client, population):
    response = confirm(client, population)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert nothing_deleted(population)


def test_an_unknown_segment_is_404(editor_client, population):
    response = editor_client.post(
        "/segments/999999/delete-profiles/", {"typed_name": "x", "expected_count": 0}
    )
    assert response.status_code == 404
    assert nothing_deleted(population)


def test_a_get_never_deletes(editor_client, population):
    editor_client.get(url(population), {"typed_name": "Trial users", "expected_count": 4})
    assert nothing_deleted(population)


def test_other_methods_are_refused(editor_client, population):
    assert editor_client.put(url(population)).status_code == 405
    assert editor_client.delete(url(population)).status_code == 405
    assert nothing_deleted(population)


def test_a_missing_csrf_token_deletes_nothing(alice, population):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert confirm(client, population).status_code == 403
    assert nothing_deleted(population)


def test_a_segment_named_like_markup_is_shown_as_text_and_can_be_confirmed(editor_client):
    population = build_population(
        doomed=1, survivors=1, events_each=0, name="<script>alert(1)</script>"
    )
    html = editor_client.get(url(population), headers={"HX-Request": "true"}).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    response = confirm(editor_client, population, typed="<script>alert(1)</script>", expected=1)
    assert response.status_code == 302
    assert DeletionJob.objects.get().total == 1


# --- progress, cancel, resume ---------------------------------------------------


@pytest.fixture
def job(population):
    from django.contrib.auth.models import Group, User

    from segments.deletion.services import deletion_start

    dora = User.objects.create_user("dora")
    dora.groups.add(Group.objects.get(name="Editors"))
    return deletion_start(
        segment=population.segment, user=dora, typed_name="Trial users", expected_count=4
    ).job


def progress_url(job):
    return f"/segments/{job.segment_id}/deletions/{job.pk}/progress/"


def test_progress_shows_counts_and_keeps_polling_while_active(viewer_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="running", deleted=1)
    response = viewer_client.get(progress_url(job), {"polling": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 of 4 profiles deleted" in html and "(25%)" in html
    assert 'hx-trigger="every 1s"' in html
    assert "HX-Refresh" not in response.headers


def test_progress_stops_polling_and_reloads_the_page_when_done(viewer_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="completed", deleted=4)
    response = viewer_client.get(progress_url(job), {"polling": "1"})
    assert "hx-trigger" not in response.content.decode()
    assert "4 profiles deleted from Trial users" in response.content.decode()
    assert response["HX-Refresh"] == "true"


def test_progress_needs_view_access(outsider_client, job):
    assert outsider_client.get(progress_url(job)).status_code == 403


def test_progress_of_an_unknown_job_is_404(viewer_client, job):
    assert (
        viewer_client.get(f"/segments/{job.segment_id}/deletions/999999/progress/").status_code
        == 404
    )
    other = SegmentFactory()
    assert (
        viewer_client.get(f"/segments/{other.pk}/deletions/{job.pk}/progress/").status_code == 404
    )


def test_progress_refuses_post(viewer_client, job):
    assert viewer_client.post(progress_url(job)).status_code == 405


def test_an_editor_can_cancel(editor_client, job):
    response = editor_client.post(f"/segments/{job.segment_id}/deletions/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested


def test_a_viewer_cannot_cancel(viewer_client, job):
    assert (
        viewer_client.post(f"/segments/{job.segment_id}/deletions/{job.pk}/cancel/").status_code
        == 403
    )
    job.refresh_from_db()
    assert not job.cancel_requested


def test_cancel_needs_post(editor_client, job):
    assert (
        editor_client.get(f"/segments/{job.segment_id}/deletions/{job.pk}/cancel/").status_code
        == 405
    )


def test_cancelling_a_finished_job_says_so(editor_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="completed")
    response = editor_client.post(
        f"/segments/{job.segment_id}/deletions/{job.pk}/cancel/", follow=True
    )
    assert b"not running any more" in response.content


def test_an_editor_can_resume_a_failed_job(editor_client, job, django_capture_on_commit_callbacks):
    DeletionJob.objects.filter(pk=job.pk).update(status="failed", error="boom")
    with django_capture_on_commit_callbacks() as callbacks:
        response = editor_client.post(f"/segments/{job.segment_id}/deletions/{job.pk}/resume/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "pending" and len(callbacks) == 1


def test_a_viewer_cannot_resume(viewer_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="failed")
    assert (
        viewer_client.post(f"/segments/{job.segment_id}/deletions/{job.pk}/resume/").status_code
        == 403
    )
    job.refresh_from_db()
    assert job.status == "failed"


def test_resume_of_an_unknown_job_is_404(editor_client, job):
    assert (
        editor_client.post(f"/segments/{job.segment_id}/deletions/999999/resume/").status_code
        == 404
    )


def test_a_confirmation_without_the_dialogs_count_is_refused(editor_client, population):
    response = editor_client.post(url(population), {"typed_name": "Trial users"})
    assert response.status_code == 400
    assert b"profile count is missing" in response.content
    assert nothing_deleted(population)


# --- a deletion that stopped part-way: resume, close, and the segment ---------


def close_url(job):
    return f"/segments/{job.segment_id}/deletions/{job.pk}/close/"


def stopped_part_way(job, status="failed"):
    DeletionJob.objects.filter(pk=job.pk).update(status=status, deleted=1, error="boom")
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_segment_with_a_deletion_stopped_part_way_cannot_be_deleted(editor_client, job, status):
    stopped_part_way(job, status)
    response = editor_client.post(f"/segments/{job.segment_id}/delete/")
    assert response.status_code == 409
    html = response.content.decode()
    assert "stopped before it finished" in html and "3 of the profiles" in html
    assert DeletionJob.objects.get(pk=job.pk).segment_id is not None


def test_the_page_of_a_stopped_deletion_offers_resume_and_close(editor_client, job):
    stopped_part_way(job, "cancelled")
    html = editor_client.get(f"/segments/{job.segment_id}/").content.decode()
    assert "3 profiles of the confirmed set are still here" in html
    assert "Delete the other 3" in html and "Keep them and close" in html


def test_an_editor_can_close_a_stopped_deletion_and_then_delete_the_segment(editor_client, job):
    stopped_part_way(job)
    response = editor_client.post(close_url(job), follow=True)
    assert b"are kept" in response.content
    job.refresh_from_db()
    assert job.closed_at is not None and job.closed_by_username == "alice"
    assert not job.is_unfinished
    assert "Closed by alice" in editor_client.get(f"/segments/{job.segment_id}/").content.decode()
    # A closed job cannot be resumed...
    editor_client.post(f"/segments/{job.segment_id}/deletions/{job.pk}/resume/")
    job.refresh_from_db()
    assert job.status == "failed"
    # ...and the segment can go; the profiles left stay, the record stays.
    assert editor_client.post(f"/segments/{job.segment_id}/delete/").status_code == 302
    job.refresh_from_db()
    assert job.segment_id is None
    assert Profile.objects.filter(pk__in=job.snapshot.values("profile_id")).count() == 4


def test_an_editor_can_resume_a_cancelled_deletion_to_delete_the_rest(
    editor_client, job, django_capture_on_commit_callbacks
):
    stopped_part_way(job, "cancelled")
    with django_capture_on_commit_callbacks() as callbacks:
        editor_client.post(f"/segments/{job.segment_id}/deletions/{job.pk}/resume/")
    job.refresh_from_db()
    assert job.status == "pending" and not job.cancel_requested and len(callbacks) == 1


def test_a_finished_deletion_cannot_be_closed(editor_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="completed", deleted=4)
    response = editor_client.post(close_url(job), follow=True)
    assert b"Only a deletion that stopped part-way can be closed" in response.content
    job.refresh_from_db()
    assert job.closed_at is None


def test_a_viewer_cannot_close(viewer_client, job):
    stopped_part_way(job)
    assert viewer_client.post(close_url(job)).status_code == 403
    job.refresh_from_db()
    assert job.closed_at is None


def test_close_needs_post(editor_client, job):
    stopped_part_way(job)
    assert editor_client.get(close_url(job)).status_code == 405
    job.refresh_from_db()
    assert job.closed_at is None


def test_close_of_an_unknown_job_is_404(editor_client, job):
    assert (
        editor_client.post(f"/segments/{job.segment_id}/deletions/999999/close/").status_code == 404
    )


def test_close_needs_a_login(client, job):
    stopped_part_way(job)
    response = client.post(close_url(job))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- what the progress card says about time -------------------------------------


def test_a_running_job_without_progress_says_so_instead_of_an_estimate(viewer_client, job):
    from datetime import timedelta

    from django.utils import timezone

    long_ago = timezone.now() - timedelta(seconds=70)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="running", deleted=1, started_at=long_ago, last_progress_at=long_ago
    )
    html = viewer_client.get(progress_url(job), {"polling": "1"}).content.decode()
    assert "No progress for 70 s: waiting for a worker to resume." in html
    assert "left." not in html


def test_a_moving_job_estimates_the_time_left_from_its_recent_batches(viewer_client, job):
    from datetime import timedelta

    from django.utils import timezone

    from segments.models import DeletionBatch

    now = timezone.now()
    # Started an hour ago (a crash in between), but 1 profile per second now.
    DeletionJob.objects.filter(pk=job.pk).update(
        status="running", deleted=1, started_at=now - timedelta(hours=1), last_progress_at=now
    )
    DeletionBatch.objects.create(job=job, profiles=1, duration_ms=1000, finished_at=now)
    html = viewer_client.get(progress_url(job), {"polling": "1"}).content.decode()
    assert "About 3 seconds left." in html
    assert "No progress" not in html


def test_a_job_waiting_for_a_held_profile_says_who_holds_it(viewer_client, job):
    from django.utils import timezone

    DeletionJob.objects.filter(pk=job.pk).update(
        status="running",
        deleted=3,
        deferred_profile_ids=[1],
        waiting_for="1 profile in use by another connection: “nightly-report”",
        waiting_since=timezone.now(),
        last_progress_at=timezone.now(),
    )
    html = viewer_client.get(progress_url(job), {"polling": "1"}).content.decode()
    assert "Waiting for 1 profile in use by another connection: “nightly-report”" in html
    assert "an Editor can resume it later" in html


def test_the_dialog_is_not_offered_while_a_deletion_stopped_part_way_is_open(editor_client, job):
    stopped_part_way(job, "cancelled")
    response = editor_client.get(url_of_dialog(job), follow=True)
    assert b"stopped part-way. Resume it or close it" in response.content
    response = editor_client.post(
        url_of_dialog(job),
        {"typed_name": "Trial users", "expected_count": 4, "membership_token": "x"},
    )
    assert response.status_code == 400
    assert b"Resume it or close it on the segment page first" in response.content
    assert DeletionJob.objects.count() == 1


def url_of_dialog(job):
    return f"/segments/{job.segment_id}/delete-profiles/"
