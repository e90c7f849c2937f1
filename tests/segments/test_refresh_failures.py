"""Every refresh failure is recorded on the segment, shown on its page, and
can be retried: no segment says "Refreshing…" forever."""

import pytest
from django.db import transaction

from segments import services, tasks
from segments.models import Segment, SegmentMembership
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory
from tests.workers import QCluster, wait_for

TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}
# Saved before validation refused such numbers (say, through Django admin).
HUGE_VALUE = {
    "match": "all",
    "conditions": [{"type": "property", "field": "score", "operator": "gt", "value": 10**400}],
}


def requested(segment, monkeypatch):
    """Ask for a refresh as the page does, without enqueueing the task: the
    test runs the task function itself."""
    monkeypatch.setattr(services, "async_task", lambda *args: None)
    services.segment_request_refresh(segment=segment)
    assert Segment.objects.get(pk=segment.pk).is_refreshing


def members(segment):
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list("profile_id", flat=True)
    )


@pytest.mark.django_db
def test_a_rule_value_of_400_digits_is_recorded_as_a_failed_refresh(monkeypatch):
    segment = SegmentFactory(rules=HUGE_VALUE)
    kept = SegmentMembershipFactory(segment=segment).profile_id
    requested(segment, monkeypatch)

    tasks.refresh_segment(segment.pk)

    segment.refresh_from_db()
    assert not segment.is_refreshing
    assert "too large a number" in segment.refresh_error
    assert members(segment) == {kept}


@pytest.mark.django_db
def test_an_unexpected_error_is_recorded_in_plain_words_and_the_refresh_can_be_retried(
    monkeypatch,
):
    segment = SegmentFactory(rules=TRIALS)
    ada = ProfileFactory(properties={"plan": "trial"})
    requested(segment, monkeypatch)

    def broken(*args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(services, "_rewrite_membership", broken)
    tasks.refresh_segment(segment.pk)

    segment.refresh_from_db()
    assert not segment.is_refreshing
    assert segment.refresh_error.startswith("Something went wrong on our side")
    assert "division" not in segment.refresh_error
    assert members(segment) == set()

    monkeypatch.undo()
    requested(segment, monkeypatch)
    tasks.refresh_segment(segment.pk)
    segment.refresh_from_db()
    assert segment.refresh_error == "" and not segment.is_refreshing
    assert members(segment) == {ada.pk}


@pytest.mark.django_db
def test_the_page_says_why_the_last_refresh_failed_and_offers_refresh_again(
    monkeypatch, editor_client
):
    segment = SegmentFactory(rules=HUGE_VALUE)
    requested(segment, monkeypatch)
    tasks.refresh_segment(segment.pk)

    html = editor_client.get(f"/segments/{segment.pk}/").content.decode()
    assert "The last refresh failed" in html and "too large a number" in html
    assert "Refreshing…" not in html
    assert 'id="refresh-button">' in html  # not disabled

    response = editor_client.post(f"/segments/{segment.pk}/refresh/")
    assert response.status_code == 302
    assert Segment.objects.get(pk=segment.pk).refresh_error == ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_records_the_failure_of_a_refresh_it_cannot_run():
    segment = SegmentFactory(rules=HUGE_VALUE)
    with transaction.atomic():
        services.segment_request_refresh(segment=segment)

    with QCluster() as cluster:
        failed = wait_for(
            lambda: Segment.objects.filter(pk=segment.pk).exclude(refresh_error="").first(),
            timeout=60,
            message="the failure to be recorded",
        )
        assert "Traceback" not in cluster.log(), cluster.log()

    assert not failed.is_refreshing
    assert "too large a number" in failed.refresh_error


@pytest.mark.django_db
def test_a_database_error_is_recorded_with_the_first_line_of_its_reason(monkeypatch):
    segment = SegmentFactory(rules=TRIALS)
    requested(segment, monkeypatch)

    def failing_sql(*args):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0\nFROM profiles_profile")

    monkeypatch.setattr(services, "_rewrite_membership", failing_sql)
    tasks.refresh_segment(segment.pk)

    segment.refresh_from_db()
    assert not segment.is_refreshing
    assert segment.refresh_error == (
        "The database could not run it (division by zero). "
        "The previous membership is unchanged; try again."
    )
