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


HTMX = {"HX-Request": "true"}


def test_confirming_through_htmx_swaps_the_panel_in_without_a_reload(editor_client, population):
    response = confirm(editor_client, population, headers=HTMX)
    assert response.status_code == 200
    assert "HX-Redirect" not in response.headers and "HX-Refresh" not in response.headers
    assert (response["HX-Retarget"], response["HX-Reswap"]) == ("#deletion-panel", "outerHTML")
    html = response.content.decode()
    job = DeletionJob.objects.get()
    assert html.lstrip().startswith('<div id="deletion-panel">')
    # Focus moves to the new status; the dialog's slot is emptied out of band.
    assert '<h2 id="deletion-status" tabindex="-1" data-status-focus autofocus>' in html
    assert '<div id="delete-dialog-slot" hx-swap-oob="true"></div>' in html
    assert (
        f'data-announce-key="job-{job.pk}-start" '
        'data-announce="Deletion started: deleting 4 profiles from Trial users."'
    ) in html
    assert '<section id="refresh-status" class="card count-card" hx-swap-oob="true"' in html
    # No flash message waits for the next page: the live region said it.
    page = editor_client.get(f"/segments/{population.segment.pk}/").content.decode()
    assert "Deleting 4 profiles from Trial users" not in page
    assert "autofocus>" not in page  # a page load does not steal the focus


def test_the_dialog_explains_why_delete_profiles_is_disabled(editor_client, population):
    for headers in (HTMX, {}):
        html = editor_client.get(url(population), headers=headers).content.decode()
        assert 'id="delete-hint"' in html
        assert "Type the segment's name exactly to enable Delete Profiles." in html
        assert 'data-match="The name matches. Delete Profiles deletes 4 profiles;' in html
        assert 'data-confirm-submit aria-describedby="delete-hint">Delete Profiles' in html
        assert 'aria-describedby="delete-hint"' in html.split('id="id_typed_name"')[1]


@pytest.mark.parametrize("headers", [HTMX, {}], ids=["htmx", "page"])
def test_an_empty_segment_offers_nobody_to_delete(editor_client, headers):
    segment = SegmentFactory(name="Nobody here", member_count=0)
    segment.last_refreshed_at = segment.updated_at
    segment.save()
    response = editor_client.get(f"/segments/{segment.pk}/delete-profiles/", headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nobody to delete" in html and "there are no profiles to delete" in html
    assert 'name="typed_name"' not in html and "data-confirm-submit" not in html
    assert "Delete 0 profiles" not in html


def test_the_menu_says_there_is_nobody_to_delete_in_an_empty_segment(editor_client):
    empty = SegmentFactory(name="Nobody here", member_count=0)
    html = editor_client.get(f"/segments/{empty.pk}/").content.decode()
    assert "Nobody to delete: this segment has no profiles." in html
    assert f'href="/segments/{empty.pk}/delete-profiles/"' not in html
    never = SegmentFactory(name="Never counted", member_count=None)
    html = editor_client.get(f"/segments/{never.pk}/").content.decode()
    assert "this segment has not been counted. Refresh it first." in html


@pytest.mark.parametrize("headers", [HTMX, {}], ids=["htmx", "page"])
def test_confirming_an_empty_segment_is_refused_and_records_nothing(editor_client, headers):
    segment = SegmentFactory(name="Nobody here", member_count=0)
    data = {
        "typed_name": "Nobody here",
        "expected_count": 0,
        "membership_token": segment_membership_token(segment),
    }
    response = editor_client.post(f"/segments/{segment.pk}/delete-profiles/", data, headers=headers)
    assert response.status_code == 400
    assert b"there is nobody to delete" in response.content
    assert b"no deletion was recorded" in response.content
    assert not DeletionJob.objects.exists()


@pytest.mark.parametrize("typed", ["trial users", "Trial user", "Trial users!", "", "Trial"])
def test_a_wrong_name_re_renders_the_dialog_with_an_error(editor_client, population, typed):
    response = confirm(editor_client, population, typed=typed, headers={"HX-Request": "true"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "<dialog" in html and "Nothing was deleted" in html
    assert nothing_deleted(population)


@pytest.mark.parametrize("headers", [HTMX, {}], ids=["htmx", "page"])
def test_a_changed_count_asks_to_review_again_keeping_the_typed_name(
    editor_client, population, headers
):
    response = confirm(editor_client, population, expected=3, headers=headers)
    assert response.status_code == 409
    html = response.content.decode()
    assert (
        '<div class="error" role="alert"><p>The segment has changed: it now has 4 profiles' in html
    )
    assert "(the dialog showed 3)" in html
    # Confirming again confirms the new number, for the membership as it is now.
    assert 'name="expected_count" value="4"' in html
    token = segment_membership_token(population.segment)
    assert f'name="membership_token" value="{token}"' in html
    assert "Delete 4 profiles?" in html and "4 profiles</strong>\nare in the segment now" in html
    # What was typed is kept: it matches the name.
    assert 'name="typed_name" id="id_typed_name" value="Trial users"' in html
    assert nothing_deleted(population)


def test_a_segment_emptied_since_the_dialog_opened_says_nobody_is_left(editor_client, population):
    from segments.models import SegmentMembership

    SegmentMembership.objects.filter(segment=population.segment).delete()
    response = confirm(editor_client, population, headers=HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Nobody to delete" in html and "it now has 0 profiles (the dialog showed 4)" in html
    assert 'name="typed_name"' not in html and "data-confirm-submit" not in html
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


def test_progress_without_htmx_is_the_card(viewer_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="completed", deleted=4)
    response = viewer_client.get(progress_url(job), {"polling": "1"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="deletion"')
    assert "hx-trigger" not in html and "4 profiles deleted from Trial users" in html


def test_a_poll_in_the_same_state_swaps_only_the_numbers(viewer_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="running", deleted=1)
    response = viewer_client.get(
        progress_url(job), {"polling": "1", "shown": "running"}, headers=HTMX
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="deletion-numbers"')
    assert "<h2" not in html and "Stop deleting" not in html and "HX-Retarget" not in response
    assert '<progress class="progress" max="100" value="25"' in html
    assert 'aria-valuetext="1 of 4 profiles deleted"' in html
    assert "shown=running" in html


def test_a_poll_that_finds_a_new_state_swaps_the_whole_card(viewer_client, job):
    DeletionJob.objects.filter(pk=job.pk).update(status="running", deleted=2)
    response = viewer_client.get(
        progress_url(job), {"polling": "1", "shown": "pending"}, headers=HTMX
    )
    html = response.content.decode()
    assert (response["HX-Retarget"], response["HX-Reswap"]) == ("#deletion", "outerHTML")
    assert html.lstrip().startswith('<section id="deletion"')
    assert "Deleting profiles…" in html and "autofocus" not in html
    assert '<section class="card" id="deletion-history"' in html and ">Deleting</span>" in html
    assert 'hx-swap-oob="true"' in html.split('id="deletion-history"')[1].split(">")[0]
    assert f'data-announce-key="job-{job.pk}-50" data-announce="Deletion 50% done: 2 of 4' in html


@pytest.mark.parametrize("shown", ["", "<b>bogus</b>", "x" * 5000])
def test_a_poll_with_a_bad_state_gets_the_whole_card_and_no_echo(viewer_client, job, shown):
    DeletionJob.objects.filter(pk=job.pk).update(status="running", deleted=1)
    response = viewer_client.get(progress_url(job), {"polling": "1", "shown": shown}, headers=HTMX)
    assert response.status_code == 200 and response["HX-Retarget"] == "#deletion"
    html = response.content.decode()
    assert "bogus" not in html and "xxxxx" not in html and "shown=running" in html


@pytest.mark.parametrize(
    ("deleted", "key"), [(0, "start"), (1, "25"), (2, "50"), (3, "75"), (4, "75")]
)
def test_a_running_deletion_announces_only_its_highest_milestone(viewer_client, job, deleted, key):
    DeletionJob.objects.filter(pk=job.pk).update(status="running", deleted=deleted)
    html = viewer_client.get(
        progress_url(job), {"polling": "1", "shown": "running"}, headers=HTMX
    ).content.decode()
    assert html.count("data-announce-key=") == 1
    assert f'data-announce-key="job-{job.pk}-{key}"' in html


def test_the_end_swaps_the_panel_the_count_line_and_the_menu_in_place(viewer_client, job):
    from django.utils import timezone

    DeletionJob.objects.filter(pk=job.pk).update(
        status="completed", deleted=4, finished_at=timezone.now()
    )
    segment = job.segment
    segment.member_count = 0
    segment.save()
    response = viewer_client.get(
        progress_url(job), {"polling": "1", "shown": "running"}, headers=HTMX
    )
    assert "HX-Refresh" not in response.headers
    assert (response["HX-Retarget"], response["HX-Reswap"]) == ("#deletion-panel", "outerHTML")
    assert response["HX-Trigger"] == "segment-refreshed"  # the members table reloads
    html = response.content.decode()
    assert "hx-trigger" not in html and "4 profiles deleted from Trial users" in html
    assert (
        f'data-announce-key="job-{job.pk}-end" '
        'data-announce="Deletion complete: 4 profiles deleted from Trial users."'
    ) in html
    assert "Deletion history" in html and "autofocus" not in html
    assert '<section id="refresh-status" class="card count-card" hx-swap-oob="true"' in html
    text = " ".join(html.split())
    assert "everyone in this segment was deleted on" in text
    assert f"(deletion #{job.pk}). Refresh to re-evaluate the rules." in text
    assert '<li role="none" id="deletion-menu-item" hx-swap-oob="true">' in html


def test_after_a_deletion_the_count_line_says_what_the_number_is(editor_client, job):
    from datetime import timedelta

    from django.utils import timezone

    segment = job.segment
    finished = segment.last_refreshed_at + timedelta(minutes=3)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="completed", deleted=4, finished_at=finished
    )
    segment.member_count = 0
    segment.save()
    html = " ".join(editor_client.get(f"/segments/{segment.pk}/").content.decode().split())
    when = timezone.localtime(finished).strftime("%-d %b %Y, %H:%M")
    assert "0</strong> profiles: everyone in this segment was deleted on" in html
    assert f"{when} UTC</time> (deletion #{job.pk}). Refresh to re-evaluate the rules." in html
    assert "as of" not in html.split('id="member-count-line"')[1].split("</p>")[0]
    # A refresh after the deletion makes the count the rules' again.
    segment.last_refreshed_at = finished + timedelta(minutes=1)
    segment.save()
    html = editor_client.get(f"/segments/{segment.pk}/").content.decode()
    assert "everyone in this segment was deleted" not in html and ", as of" in html


def test_after_a_part_way_deletion_the_count_line_says_who_is_left(editor_client, job):
    from django.utils import timezone

    DeletionJob.objects.filter(pk=job.pk).update(
        status="cancelled", deleted=1, finished_at=timezone.now()
    )
    segment = job.segment
    segment.member_count = 3
    segment.save()
    html = editor_client.get(f"/segments/{segment.pk}/").content.decode()
    assert f"the ones left after deletion #{job.pk} deleted 1 on" in html
    assert "Refresh to re-evaluate the rules." in html


def test_the_segment_page_has_one_live_region_and_it_is_empty(viewer_client, job):
    import re

    DeletionJob.objects.filter(pk=job.pk).update(status="running", deleted=1)
    html = viewer_client.get(f"/segments/{job.segment_id}/").content.decode()
    assert html.count("aria-live") == 1
    assert re.search(r'<div id="announcer" [^>]*aria-live="polite"[^>]*></div>', html)
    assert 'role="status"' not in html and 'role="alert"' not in html


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


# --- Refresh swaps the count in place and says so in the live region ---------


def test_refresh_through_htmx_swaps_the_count_and_says_it_started(editor_client, population):
    pk = population.segment.pk
    response = editor_client.post(f"/segments/{pk}/refresh/", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="refresh-status"')
    assert 'data-announce="Refreshing Trial users: counting who is in it…"' in html
    assert "aria-live" not in html  # the page's one region is never swapped
    # Refresh is disabled while it runs: the count line can take the focus.
    assert 'id="refresh-button" disabled' in html
    assert '<p class="count" id="member-count-line" tabindex="-1" data-status-focus>' in html


def test_the_refresh_status_names_the_count_and_the_deletion_it_comes_from(viewer_client, job):
    from datetime import timedelta

    segment = job.segment
    DeletionJob.objects.filter(pk=job.pk).update(
        status="completed", deleted=4, finished_at=segment.last_refreshed_at + timedelta(seconds=1)
    )
    segment.member_count = 0
    segment.save()
    response = viewer_client.get(f"/segments/{segment.pk}/refresh/status/", headers=HTMX)
    assert response.status_code == 200
    html = " ".join(response.content.decode().split())
    assert "everyone in this segment was deleted on" in html and f"(deletion #{job.pk})" in html
    assert 'data-announce="Refreshed: 0 profiles in Trial users."' in html
    assert response["HX-Trigger"] == "segment-refreshed"


def test_the_refresh_status_needs_view_access_a_known_segment_and_get(outsider_client, population):
    pk = population.segment.pk
    assert outsider_client.get(f"/segments/{pk}/refresh/status/", headers=HTMX).status_code == 403


def test_the_refresh_status_of_an_unknown_segment_is_404_and_refuses_post(
    viewer_client, population
):
    assert viewer_client.get("/segments/999999/refresh/status/", headers=HTMX).status_code == 404
    pk = population.segment.pk
    assert viewer_client.post(f"/segments/{pk}/refresh/status/").status_code == 405


def test_polls_through_htmx_need_view_access(outsider_client, job):
    params = {"polling": "1", "shown": "pending"}
    assert outsider_client.get(progress_url(job), params, headers=HTMX).status_code == 403


def test_polls_through_htmx_of_an_unknown_job_are_404_and_post_is_refused(viewer_client, job):
    params = {"polling": "1", "shown": "pending"}
    unknown = f"/segments/{job.segment_id}/deletions/999999/progress/"
    assert viewer_client.get(unknown, params, headers=HTMX).status_code == 404
    assert viewer_client.post(progress_url(job), params, headers=HTMX).status_code == 405
