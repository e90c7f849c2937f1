"""When a schedule's next slot is: pure date arithmetic, no database."""

import datetime
from zoneinfo import ZoneInfo

from django.conf import settings


def schedule_timezone() -> ZoneInfo:
    """Times of day are in the dashboard's time zone (settings.TIME_ZONE)."""
    return ZoneInfo(settings.TIME_ZONE)


def next_slot(
    *, frequency: str, weekday: int | None, time_of_day: datetime.time, after: datetime.datetime
) -> datetime.datetime:
    """The first slot strictly after ``after``: today or a later day at
    ``time_of_day``, on ``weekday`` (0 = Monday) for a weekly schedule.

    Computed from ``after`` (the dispatcher passes "now"), never from the
    previous slot: workers that were down for days run the missed slot once
    and go on from the present, instead of once per missed slot.
    """
    zone = schedule_timezone()
    local = after.astimezone(zone)
    for offset in range(8):
        day = local.date() + datetime.timedelta(days=offset)
        if frequency == "weekly" and day.weekday() != weekday:
            continue
        # fold=0 picks the first of a repeated hour; a skipped hour (spring
        # forward) is read as the hour after by zoneinfo.
        candidate = datetime.datetime.combine(day, time_of_day, tzinfo=zone)
        if candidate > after:
            return candidate
    raise ValueError(f"No slot found for {frequency!r} on weekday {weekday!r}")
