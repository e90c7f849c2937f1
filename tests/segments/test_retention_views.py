"""The retention pages: create (from the ••• menu), the schedule page with
its dry run, pause, resume and delete. Each: happy path, no login, 403,
404, 405, bad input."""

import datetime
import json

import pytest
from django.test import Client
from django.urls import reverse

from segments import services as segment_services
from segments.deletion.services import deletion_start
from segments.models import DeletionJob, RetentionSchedule
from segments.retention import services as retention
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory
from tests.vero_admin.test_profile_access import _client_with

pytestmark = pytest.mark.django_db

TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def segment():
    segment = SegmentFactory(name="Old Trials", rules=TRIALS)
    for n, plan in enumerate(("trial", "trial", "trial", "paid")):
        ProfileFactory(properties={"plan": plan}, email=f"member{n}@example.com")
    segment_services.segment_refresh(segment=segment)
    return segment


@pytest.fixture
def schedule(segment, alice):
    return retention.retention_create(
        segment=segment,
        user=alice,
        typed_name=segment.name,
        frequency="weekly",
        weekday=0,
        time_of_day=datetime.time(3, 0),
        max_profiles=100,
    )


def url(name, segment_or_pk):
    pk = getattr(segment_or_pk, "pk", segment_or_pk)
    return reverse(f"segments:{name}", args=[pk])


def valid_post(segment, **changes):
    data = {
        "frequency": "weekly",
        "weekday": "0",
        "time_of_day": "03:00",
        "max_profiles": "500",
        "typed_name": segment.name,
    }
    data.update(changes)
    return data


# --- The ••• menu and the segment page -----------------------------------------------


def test_the_menu_offers_editors_a_schedule(editor_client, segment):
    page = editor_client.get(segment.get_absolute_url()).content.decode()
    assert url("retention_create", segment) in page
    assert "Delete this segment's members automatically…" in page


def test_the_menu_item_is_disabled_for_viewers_with_the_reason(viewer_client, segment):
    page = viewer_client.get(segment.get_absolute_url()).content.decode()
    assert url("retention_create", segment) not in page
    assert "You need View and Edit access to schedule deletions." in page


def test_the_segment_page_shows_a_paused_schedule_and_why(editor_client, schedule, segment):
    RetentionSchedule.objects.filter(pk=schedule.pk).update(
        status="paused", pause_reason="The run found 4,000 profiles, more than 100."
    )
    page = editor_client.get(segment.get_absolute_url()).content.decode()
    assert "Automatic deletion: paused" in page
    assert "The run found 4,000 profiles, more than 100." in page
    assert url("retention", segment) in page


# --- Create ------------------------------------------------------------------------------


def test_an_editor_sees_the_form_with_a_limit_above_todays_size(editor_client, segment):
    response = editor_client.get(url("retention_create", segment))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="max_profiles" value="100"' in html
    assert 'data-confirm-match="Old Trials"' in html
    assert 'for="id_time_of_day"' in html and 'type="time"' in html


def test_an_editor_creates_a_schedule(editor_client, segment, alice):
    response = editor_client.post(url("retention_create", segment), valid_post(segment))
    assert response.status_code == 302
    assert response["Location"] == url("retention", segment)
    schedule = RetentionSchedule.objects.get()
    assert (schedule.frequency, schedule.weekday, schedule.max_profiles) == ("weekly", 0, 500)
    assert schedule.time_of_day == datetime.time(3, 0)
    assert schedule.owner == alice
    assert schedule.next_run_at.weekday() == 0


def test_a_daily_schedule_ignores_the_weekday(editor_client, segment):
    editor_client.post(url("retention_create", segment), valid_post(segment, frequency="daily"))
    assert RetentionSchedule.objects.get().weekday is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"typed_name": "old trials"}, "That is not the segment&#x27;s name"),
        ({"typed_name": "Old Trial"}, "That is not the segment&#x27;s name"),
        ({"typed_name": "Old Tri\u0430ls"}, "a letter is a different character"),
        ({"typed_name": ""}, "Type the segment&#x27;s name to confirm"),
        ({"max_profiles": "0"}, "at least 1 profile"),
        ({"max_profiles": "-5"}, "at least 1 profile"),
        ({"max_profiles": "lots"}, "whole number"),
        ({"max_profiles": "99999999999"}, "at most 10,000,000"),
        ({"time_of_day": "25:00"}, "hours and minutes"),
        ({"time_of_day": ""}, "Choose a time of day"),
        ({"frequency": "hourly"}, "Select a valid choice"),
        ({"weekday": ""}, "Choose the day of the week"),
        ({"weekday": "9"}, "Select a valid choice"),
        ({"typed_name": "x" * 500}, "That is not the segment&#x27;s name"),
        ({"typed_name": "Old\x00Trials"}, "Null characters are not allowed"),
    ],
)
def test_bad_input_says_what_is_wrong_and_creates_nothing(editor_client, segment, changes, message):
    response = editor_client.post(url("retention_create", segment), valid_post(segment, **changes))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html, html
    assert "No schedule was created" in html
    assert not RetentionSchedule.objects.exists()


def test_a_second_schedule_is_refused_and_shows_the_first(editor_client, schedule, segment):
    response = editor_client.post(url("retention_create", segment), valid_post(segment))
    assert response.status_code == 302 and response["Location"] == url("retention", segment)
    assert RetentionSchedule.objects.count() == 1


def test_a_viewer_cannot_create(viewer_client, segment):
    assert viewer_client.get(url("retention_create", segment)).status_code == 403
    response = viewer_client.post(url("retention_create", segment), valid_post(segment))
    assert response.status_code == 403
    assert not RetentionSchedule.objects.exists()


def test_create_needs_a_login(client, segment):
    response = client.post(url("retention_create", segment), valid_post(segment))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not RetentionSchedule.objects.exists()


def test_create_for_an_unknown_segment_is_404(editor_client):
    assert editor_client.get(url("retention_create", 999999)).status_code == 404


def test_create_answers_405_to_other_methods(editor_client, segment):
    assert editor_client.put(url("retention_create", segment)).status_code == 405


# --- The schedule page and its dry run ----------------------------------------------


def test_the_page_shows_the_schedule_and_the_dry_run(viewer_client, schedule, segment):
    newcomer = ProfileFactory(properties={"plan": "trial"}, email="newcomer@example.com")
    response = viewer_client.get(url("retention", segment))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Active: Every Monday at 03:00" in html
    # Who matches now, including someone the last refresh has not seen.
    assert '<strong data-testid="dry-run-count">4 profiles</strong>' in html
    assert newcomer.email in html and "member0@example.com" in html
    assert "member3@example.com" not in html  # paid: not in the segment
    assert "You need View and Edit access to pause, resume or delete" in html
    assert url("retention_pause", segment) not in html


def test_the_dry_run_says_the_brake_would_stop_the_run(editor_client, schedule, segment):
    RetentionSchedule.objects.filter(pk=schedule.pk).update(max_profiles=2)
    html = editor_client.get(url("retention", segment)).content.decode()
    assert "more than the 2 a run may delete" in html and "delete nobody and pause" in html


def test_the_dry_run_says_when_a_deletion_is_running(editor_client, schedule, segment, alice):
    job = deletion_start(segment=segment, user=alice, typed_name=segment.name, expected_count=3).job
    html = editor_client.get(url("retention", segment)).content.decode()
    assert f"deletion #{job.pk} of this segment is still running" in html


def test_the_dry_run_stores_nothing(editor_client, schedule, segment):
    before = list(RetentionSchedule.objects.values())
    editor_client.get(url("retention", segment))
    assert list(RetentionSchedule.objects.values()) == before
    assert not DeletionJob.objects.exists()


def test_an_outsider_cannot_see_the_schedule(outsider_client, schedule, segment):
    assert outsider_client.get(url("retention", segment)).status_code == 403


def test_the_page_needs_a_login(client, schedule, segment):
    response = client.get(url("retention", segment))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_page_of_a_segment_without_schedule_is_404(editor_client, segment):
    assert editor_client.get(url("retention", segment)).status_code == 404
    assert editor_client.get(url("retention", 999999)).status_code == 404


def test_the_page_is_get_only(editor_client, schedule, segment):
    assert editor_client.post(url("retention", segment)).status_code == 405


# --- Pause, resume, delete ------------------------------------------------------------------


def test_an_editor_pauses_and_resumes(editor_client, schedule, segment):
    response = editor_client.post(url("retention_pause", segment), follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Paused. Nothing runs until you resume." in html
    assert "Paused by alice" in html and "None while paused." in html
    schedule.refresh_from_db()
    assert schedule.is_paused
    response = editor_client.post(
        url("retention_resume", segment), {"typed_name": segment.name}, follow=True
    )
    assert "You are now this schedule&#x27;s owner" in response.content.decode()
    schedule.refresh_from_db()
    assert schedule.status == "active"


def test_pausing_twice_says_so_and_changes_nothing(editor_client, schedule, segment):
    editor_client.post(url("retention_pause", segment))
    schedule.refresh_from_db()
    before = RetentionSchedule.objects.values().get()
    response = editor_client.post(url("retention_pause", segment))
    assert response.status_code == 409
    assert "already paused" in response.content.decode()
    assert RetentionSchedule.objects.values().get() == before


def test_resuming_an_active_schedule_is_refused(editor_client, schedule, segment):
    response = editor_client.post(url("retention_resume", segment), {"typed_name": segment.name})
    assert response.status_code == 409
    assert "This schedule is not paused." in response.content.decode()


def test_an_editor_deletes_the_schedule(editor_client, schedule, segment):
    response = editor_client.post(url("retention_delete", segment))
    assert response.status_code == 302 and response["Location"] == segment.get_absolute_url()
    assert not RetentionSchedule.objects.exists()


@pytest.mark.parametrize("action", ["retention_pause", "retention_resume", "retention_delete"])
def test_viewers_cannot_change_a_schedule(viewer_client, schedule, segment, action):
    before = list(RetentionSchedule.objects.values())
    assert viewer_client.post(url(action, segment)).status_code == 403
    assert list(RetentionSchedule.objects.values()) == before


@pytest.mark.parametrize("action", ["retention_pause", "retention_resume", "retention_delete"])
def test_changes_need_a_login(client, schedule, segment, action):
    response = client.post(url(action, segment))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert RetentionSchedule.objects.filter(status="active").exists()


@pytest.mark.parametrize("action", ["retention_pause", "retention_resume", "retention_delete"])
def test_changes_are_post_only(editor_client, schedule, segment, action):
    assert editor_client.get(url(action, segment)).status_code == 405
    assert RetentionSchedule.objects.filter(status="active").exists()


@pytest.mark.parametrize("action", ["retention_pause", "retention_resume", "retention_delete"])
def test_changes_to_a_missing_schedule_are_404(editor_client, segment, action):
    assert editor_client.post(url(action, segment)).status_code == 404
    assert editor_client.post(url(action, 999999)).status_code == 404


def test_a_rule_edit_through_the_page_pauses_the_schedule(editor_client, schedule, segment):
    paid = {**TRIALS, "conditions": [{**TRIALS["conditions"][0], "value": "paid"}]}
    response = editor_client.post(
        reverse("segments:edit", args=[segment.pk]),
        {"name": segment.name, "description": "", "rules": json.dumps(paid)},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule.refresh_from_db()
    assert schedule.is_paused and "by alice" in schedule.pause_reason


# --- The audit and Django admin ------------------------------------------------------


def test_a_deletion_the_schedule_started_says_so_where_deletions_are_listed(
    editor_client, schedule, segment
):
    now = datetime.datetime(2026, 11, 30, 3, tzinfo=datetime.UTC)
    assert retention.retention_run(schedule_id=schedule.pk, slot=now) == "started"
    job = DeletionJob.objects.get()
    page = editor_client.get(segment.get_absolute_url()).content.decode()
    assert "Confirmed by alice\u2019s retention schedule" in page
    history = editor_client.get(reverse("segments:deletion_history")).content.decode()
    assert "by alice\u2019s retention schedule" in history
    html = editor_client.get(url("retention", segment)).content.decode()
    assert f"See deletion #{job.pk}</a>" in html


def test_admin_shows_schedules_read_only(client, admin_user, schedule):
    client.force_login(admin_user)
    changelist = client.get("/admin/segments/retentionschedule/")
    assert changelist.status_code == 200 and "Old Trials" in changelist.content.decode()
    assert client.get("/admin/segments/retentionschedule/add/").status_code == 403
    change = client.post(
        f"/admin/segments/retentionschedule/{schedule.pk}/change/", {"max_profiles": "1"}
    )
    assert change.status_code == 403
    schedule.refresh_from_db()
    assert schedule.max_profiles == 100


def test_a_rule_edit_in_django_admin_pauses_the_schedule(client, admin_user, schedule, segment):
    client.force_login(admin_user)
    rules = json.dumps({**TRIALS, "match": "any"})
    response = client.post(
        f"/admin/segments/segment/{segment.pk}/change/",
        {
            "name": segment.name,
            "description": "",
            "rules": rules,
            "initial-rules": json.dumps(segment.rules),
        },
    )
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.is_paused and "by root; review who is in the segment" in schedule.pause_reason


def test_the_dry_run_names_members_only_to_users_with_profile_access(schedule, segment, bob):
    html = _client_with("segments.view_segment").get(url("retention", segment)).content.decode()
    assert "3 profiles" in html and "member0@example.com" not in html
    assert 'data-testid="sample-needs-profile-access"' in html

    client = Client()
    client.force_login(bob)
    html = client.get(url("retention", segment)).content.decode()
    assert "member0@example.com" in html
    assert 'data-testid="sample-needs-profile-access"' not in html


def test_head_answers_where_get_does_and_creates_nothing(segment, editor_client):
    assert editor_client.head(url("retention_create", segment)).status_code == 200
    assert not RetentionSchedule.objects.exists()


@pytest.mark.parametrize("typed", [None, "", "Old Trial", "old trials", "Old Tri\u0430ls"])
def test_resuming_takes_the_segments_name_typed_again(editor_client, schedule, segment, typed):
    editor_client.post(url("retention_pause", segment))
    before = RetentionSchedule.objects.values().get()
    data = {} if typed is None else {"typed_name": typed}
    response = editor_client.post(url("retention_resume", segment), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="resume-error"' in html and "The schedule is still paused." in html
    assert 'aria-invalid="true"' in html
    assert RetentionSchedule.objects.values().get() == before
