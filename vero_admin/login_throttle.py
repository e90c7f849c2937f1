"""Login rate limiting: after FAILURE_LIMIT failures in WINDOW for one
username from one address, further attempts are refused until the oldest of
them is WINDOW old.

Each attempt is recorded before its password is checked, then counted: a
burst of parallel requests therefore cannot slip more than FAILURE_LIMIT
guesses past the limit. A refused attempt tests no password and leaves no
row, so the wait a user is told is the wait they get. The address is
REMOTE_ADDR; behind a proxy, that is the proxy's (see the README).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil

from django.utils import timezone

from vero_admin.models import LoginAttempt

logger = logging.getLogger(__name__)

FAILURE_LIMIT = 5
WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Lockout:
    until: datetime

    @property
    def retry_after_seconds(self) -> int:
        return max(1, ceil((self.until - timezone.now()).total_seconds()))

    @property
    def message(self) -> str:
        minutes = ceil(self.retry_after_seconds / 60)
        return (
            "Too many failed login attempts for this username from your address. "
            f"For your security, try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )


def _normalized(username: str) -> str:
    return (username or "").strip().lower()[:150]


def login_attempt_begin(*, username: str, ip_address: str | None) -> Lockout | None:
    """Record an attempt before its password is checked; a Lockout if it must be refused."""
    now = timezone.now()
    username = _normalized(username)
    LoginAttempt.objects.filter(attempted_at__lt=now - WINDOW).delete()
    attempt = LoginAttempt.objects.create(
        username=username, ip_address=ip_address, attempted_at=now
    )
    earlier = list(
        LoginAttempt.objects.filter(
            username=username, ip_address=ip_address, attempted_at__gte=now - WINDOW
        )
        .exclude(pk=attempt.pk)
        .order_by("-attempted_at", "-pk")
        .values_list("attempted_at", flat=True)[:FAILURE_LIMIT]
    )
    if len(earlier) < FAILURE_LIMIT:
        return None
    attempt.delete()
    lockout = Lockout(until=earlier[-1] + WINDOW)
    logger.warning(
        "Login refused for %r from %s: %d failures in %s; until %s",
        username,
        ip_address,
        FAILURE_LIMIT,
        WINDOW,
        lockout.until.isoformat(timespec="seconds"),
    )
    return lockout


def login_succeeded(*, username: str, ip_address: str | None) -> None:
    """A successful login forgets this username's failures from this address."""
    LoginAttempt.objects.filter(username=_normalized(username), ip_address=ip_address).delete()
