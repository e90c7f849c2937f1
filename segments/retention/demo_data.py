"""The demo's retention schedule: one, paused, on "Inactive for 3 years"."""

import datetime

from django.utils import timezone

from segments.models import RetentionSchedule, Segment
from segments.retention.timing import next_slot

RETENTION_DEMO_SEGMENT = "Inactive for 3 years"


def seed_retention_schedule(*, owner) -> str:
    """A weekly schedule, paused until someone reviews it, on the demo's
    "Inactive for 3 years" segment (which seed_demo creates with the other
    demo segments). Creates nothing twice; returns a line for the output."""
    segment = Segment.objects.filter(name=RETENTION_DEMO_SEGMENT).first()
    if segment is None:
        return f"  no {RETENTION_DEMO_SEGMENT!r} segment: no retention schedule"
    now = timezone.now()
    time_of_day = datetime.time(3, 0)
    _, created = RetentionSchedule.objects.get_or_create(
        segment=segment,
        defaults={
            "owner": owner,
            "owner_username": owner.get_username() if owner else "editor",
            "frequency": RetentionSchedule.Frequency.WEEKLY,
            "weekday": RetentionSchedule.Weekday.SUNDAY,
            "time_of_day": time_of_day,
            "max_profiles": 1000,
            "status": RetentionSchedule.Status.PAUSED,
            "pause_reason": "Paused when the demo was set up: check who is in the segment "
            "(the dry run below), then resume.",
            "paused_at": now,
            "rules_digest": RetentionSchedule.digest(segment.rules),
            "next_run_at": next_slot(
                frequency="weekly", weekday=6, time_of_day=time_of_day, after=now
            ),
        },
    )
    state = "created" if created else "already there"
    return f"  retention schedule of {segment.name!r}: paused ({state})"
