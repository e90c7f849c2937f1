from django.db import models
from django.utils import timezone


class LoginAttempt(models.Model):
    """An attempt to log in that has not (yet) succeeded, for rate limiting.

    Kept in the database rather than a per-process cache, so every web
    worker counts the same attempts; rows older than the throttle's window
    are pruned as new ones arrive, and a successful login clears its own.
    """

    username = models.CharField(max_length=150)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    attempted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["username", "ip_address", "attempted_at"], name="login_attempt_key"
            ),
            models.Index(fields=["attempted_at"], name="login_attempt_time"),
        ]

    def __str__(self):
        return f"{self.username} from {self.ip_address} at {self.attempted_at:%Y-%m-%d %H:%M}"
