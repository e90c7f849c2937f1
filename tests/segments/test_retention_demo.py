"""The demo's retention schedule."""

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from segments.models import RetentionSchedule, Segment

pytestmark = pytest.mark.django_db


def test_the_demo_has_one_paused_schedule_on_inactive_for_3_years(settings):
    settings.DEBUG = True
    call_command("seed_demo", profiles=50)
    schedule = RetentionSchedule.objects.select_related("segment", "owner").get()
    assert schedule.segment.name == "Inactive for 3 years"
    assert schedule.is_paused and "check who is in the segment" in schedule.pause_reason
    assert schedule.owner.username == "editor"
    assert not schedule.rules_changed
    assert schedule.segment.rules["conditions"] == [
        {"type": "event", "operator": "not_done", "within_days": 1095}
    ]


def test_a_second_seed_creates_no_second_schedule_and_brings_none_back(settings):
    settings.DEBUG = True
    call_command("seed_demo", profiles=20)
    RetentionSchedule.objects.all().delete()
    call_command("seed_demo", profiles=20)
    assert not RetentionSchedule.objects.exists()
    assert Segment.objects.filter(name="Inactive for 3 years").count() == 1


def test_the_demo_schedule_page_shows_its_dry_run(settings, client):
    settings.DEBUG = True
    call_command("seed_demo", profiles=50)
    client.force_login(User.objects.get(username="viewer"))
    segment = Segment.objects.get(name="Inactive for 3 years")
    html = client.get(f"/segments/{segment.pk}/retention/").content.decode()
    assert "Paused: Every Sunday at 03:00" in html
    assert '<strong data-testid="dry-run-count">0 profiles</strong>' in html
