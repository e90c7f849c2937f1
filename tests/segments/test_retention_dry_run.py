"""`manage.py retention_dry_run`: what every schedule's next run would delete now."""

import datetime
from io import StringIO

import pytest
from django.core.management import call_command

from segments import services as segment_services
from segments.models import DeletionJob, RetentionSchedule, Segment
from segments.retention import services as retention
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 11, 29, 10, 0, tzinfo=datetime.UTC)


def plan_is(plan):
    condition = {"type": "property", "field": "plan", "operator": "equals", "value": plan}
    return {"match": "all", "conditions": [condition]}


def scheduled(name, plan, user, *, max_profiles=100, **kwargs):
    segment = SegmentFactory(name=name, rules=plan_is(plan))
    segment_services.segment_refresh(segment=segment)
    options = {"frequency": "daily", "weekday": None, "time_of_day": datetime.time(3)}
    options.update(kwargs)
    return retention.retention_create(
        segment=segment,
        user=user,
        typed_name=name,
        max_profiles=max_profiles,
        now=NOW,
        **options,
    )


def dry_run(*args) -> str:
    out = StringIO()
    call_command("retention_dry_run", *args, stdout=out)
    return out.getvalue()


def test_it_says_when_there_are_no_schedules():
    assert dry_run() == "There are no retention schedules.\n"


def test_it_prints_every_schedule_and_what_its_run_would_do_now(alice):
    for plan in ("trial", "trial", "trial", "paid", "free"):
        ProfileFactory(properties={"plan": plan}, email=f"{plan}@example.com")
    scheduled("Trials", "trial", alice, max_profiles=10, frequency="weekly", weekday=0)
    scheduled("Paid", "paid", alice, max_profiles=1)
    paused = scheduled("Free", "free", alice)
    retention.retention_pause(schedule=paused, user=alice)
    ProfileFactory(properties={"plan": "paid"})  # joins at the next refresh
    before = list(RetentionSchedule.objects.values()), list(Segment.objects.values())

    lines = dry_run().splitlines()

    assert lines == [
        "Free (every day at 03:00, paused, at most 100 per run): "
        "1 profile match now; the run would delete it once resumed.",
        "Paid (every day at 03:00, next run 2026-11-30 03:00 UTC, at most 1 per run): "
        "2 profiles match now; more than the limit: the run would delete nobody and pause.",
        "Trials (every Monday at 03:00, next run 2026-11-30 03:00 UTC, at most 10 per run): "
        "3 profiles match now; the run would delete them.",
    ]
    # Nothing written, nobody named.
    assert (list(RetentionSchedule.objects.values()), list(Segment.objects.values())) == before
    assert not DeletionJob.objects.exists()
    assert "@example.com" not in "\n".join(lines)


def test_it_says_a_run_would_pause_after_a_rule_change(alice):
    schedule = scheduled("Trials", "trial", alice)
    Segment.objects.filter(pk=schedule.segment_id).update(rules=plan_is("free"))
    assert "the rules changed since the schedule was confirmed: the run would pause" in dry_run()


def test_it_lists_profile_ids_only_when_asked(alice):
    profiles = [ProfileFactory(properties={"plan": "trial"}) for _ in range(3)]
    scheduled("Trials", "trial", alice)
    output = dry_run("--sample", "2")
    assert f"Profile ids: {profiles[0].pk}, {profiles[1].pk}." in output
    assert "Profile ids" not in dry_run()
