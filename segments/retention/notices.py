"""The email to a schedule's owner when the brake stops a run.

The pause that owes it sets ``brake_email_owed`` in its own statement; a
sender claims it by clearing the flag (one UPDATE … RETURNING), then sends.
So two senders never send it twice; a sender killed between the claim and
the send loses it (logged on the way), and the page shows the pause either
way. Sent after the run's pause, and swept by the dispatcher every minute.

It carries counts and the segment's name, never a member: the address is
read from the owner at send time and neither logged nor stored.
"""

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection
from django.template.loader import render_to_string

from segments.models import RetentionSchedule

logger = logging.getLogger(__name__)


def retention_brake_emails_send() -> int:
    """Send every brake email owed; return how many were sent."""
    table = RetentionSchedule._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET brake_email_owed = false "  # noqa: S608 (table name from model metadata)
            "WHERE brake_email_owed RETURNING id"
        )
        ids = [row[0] for row in cursor.fetchall()]
    sent = 0
    for schedule in RetentionSchedule.objects.filter(pk__in=ids).select_related("segment", "owner"):
        try:
            sent += _send(schedule)
        except Exception as exc:
            # The text may quote the address: only the class is logged.
            logger.warning(
                "Retention schedule %s: the brake email was not sent (%s)",
                schedule.pk,
                type(exc).__name__,
            )
    return sent


def _send(schedule: RetentionSchedule) -> int:
    address = schedule.owner.email if schedule.owner else ""
    if not address:
        logger.warning("Retention schedule %s: brake email not sent: no address", schedule.pk)
        return 0
    name = " ".join(schedule.segment.name.split())
    found = schedule.brake_found or 0
    subject = (
        f"Automatic deletion from “{name}” paused: {found:,} profile{'s' if found != 1 else ''} "
        f"found, more than the {schedule.max_profiles:,} allowed"
    )
    body = render_to_string(
        "segments/email/retention_brake.txt",
        {
            "schedule": schedule,
            "segment_name": name,
            "found": found,
            "link": settings.SITE_URL + schedule.get_absolute_url(),
        },
    )
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    stamp = schedule.paused_at.strftime("%Y%m%dT%H%M%S") if schedule.paused_at else "0"
    EmailMessage(
        subject=subject,
        body=body,
        to=[address],
        headers={"Message-ID": f"<retention-{schedule.pk}-brake-{stamp}@{host}>"},
    ).send()
    logger.info(
        "Retention schedule %s: brake email sent to user %s", schedule.pk, schedule.owner_id
    )
    return 1
