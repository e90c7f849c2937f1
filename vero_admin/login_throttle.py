"""Login rate limiting, by two counts of failures in WINDOW:

- FAILURE_LIMIT for one username from one address: a user who mistypes is
  stopped without locking the account for everyone else (an attacker
  elsewhere, failing with a known username, locks only their own address);
- ADDRESS_FAILURE_LIMIT from one address, whatever the usernames: one
  password tried across many usernames is stopped too.

Further attempts are refused until the oldest counted failure is WINDOW old.

Each attempt is recorded before its password is checked, then counted: a
burst of parallel requests therefore cannot slip more guesses past a limit.
A refused attempt tests no password and leaves no row, so the wait a user is
told is the wait they get. The address is REMOTE_ADDR, or, behind a proxy
named in the settings (VERO_TRUSTED_PROXY_HEADER, see ``client_address``),
the client's address as that proxy saw it.
"""

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil

from django.conf import settings
from django.utils import timezone

from vero_admin.models import LoginAttempt

logger = logging.getLogger(__name__)

FAILURE_LIMIT = 5
ADDRESS_FAILURE_LIMIT = 20
WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Lockout:
    until: datetime
    per_address: bool = False  # the address's limit, not the username's

    @property
    def retry_after_seconds(self) -> int:
        return max(1, ceil((self.until - timezone.now()).total_seconds()))

    @property
    def message(self) -> str:
        minutes = ceil(self.retry_after_seconds / 60)
        whose = "from your address" if self.per_address else "for this username from your address"
        return (
            f"Too many failed login attempts {whose}. "
            f"For your security, try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )


def client_address(request) -> str | None:
    """The address a login attempt comes from: REMOTE_ADDR, or, when a
    trusted proxy is configured, the entry of its header that the
    outermost trusted proxy wrote (``VERO_TRUSTED_PROXY_HOPS`` from the
    right; entries further left are whatever the client sent). A missing
    or malformed header falls back to REMOTE_ADDR."""
    remote = request.META.get("REMOTE_ADDR") or None
    header = getattr(settings, "VERO_TRUSTED_PROXY_HEADER", "")
    if not header:
        return remote
    raw = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
    entries = [entry.strip() for entry in raw.split(",")]
    hops = getattr(settings, "VERO_TRUSTED_PROXY_HOPS", 1)
    if not raw or len(entries) < hops:
        return remote
    try:
        return str(ipaddress.ip_address(entries[-hops]))
    except ValueError:
        return remote


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
    lockout = None
    if len(earlier) >= FAILURE_LIMIT:
        lockout = Lockout(until=earlier[-1] + WINDOW)
    elif ip_address is not None:
        from_address = list(
            LoginAttempt.objects.filter(ip_address=ip_address, attempted_at__gte=now - WINDOW)
            .exclude(pk=attempt.pk)
            .order_by("-attempted_at", "-pk")
            .values_list("attempted_at", flat=True)[:ADDRESS_FAILURE_LIMIT]
        )
        if len(from_address) >= ADDRESS_FAILURE_LIMIT:
            lockout = Lockout(until=from_address[-1] + WINDOW, per_address=True)
    if lockout is None:
        return None
    attempt.delete()
    logger.warning(
        "Login refused for %r from %s: %d failures %s in %s; until %s",
        username,
        ip_address,
        ADDRESS_FAILURE_LIMIT if lockout.per_address else FAILURE_LIMIT,
        "from the address" if lockout.per_address else "for the username",
        WINDOW,
        lockout.until.isoformat(timespec="seconds"),
    )
    return lockout


def login_succeeded(*, username: str, ip_address: str | None) -> None:
    """A successful login forgets this username's failures from this address."""
    LoginAttempt.objects.filter(username=_normalized(username), ip_address=ip_address).delete()
