import hashlib

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.urls import reverse

from profiles.stored_json import StoredJSONField


class Profile(models.Model):
    """A person the platform knows, by the customer's own id and/or by email.

    Every model that points at Profile says through its ``on_delete`` what
    erasure does with its rows: CASCADE rows are deleted with the profile,
    SET_NULL rows are kept, unlinked, and have the fields they list in
    ``PERSONAL_FIELDS`` cleared (see ``profiles.erasure``).
    """

    user_id = models.CharField("user id", max_length=255, null=True, blank=True)
    email = models.EmailField(max_length=254, blank=True, default="")
    properties = StoredJSONField("custom attributes", default=dict, blank=True)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    subscribed = models.BooleanField(default=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_id"],
                condition=Q(user_id__isnull=False),
                name="profile_user_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(user_id__isnull=False) | ~Q(email=""),
                name="profile_has_user_id_or_email",
            ),
        ]
        indexes = [models.Index(fields=["email"], name="profile_email_idx")]

    def __str__(self):
        return self.email or self.user_id or f"Profile {self.pk}"

    def get_absolute_url(self):
        return reverse("profiles:detail", args=[self.pk])


class Event(models.Model):
    """Something a profile did. The largest table: tens of rows per profile."""

    # No index of its own: event_profile_time_idx starts with profile_id, and
    # every extra index on the largest table slows ingestion and erasure.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    name = models.CharField(max_length=255)
    properties = StoredJSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Per-profile access (profile page, erasure) and behaviour rules.
            models.Index(fields=["profile", "occurred_at"], name="event_profile_time_idx"),
            models.Index(fields=["name", "occurred_at"], name="event_name_time_idx"),
        ]

    def __str__(self):
        return f"{self.name} at {self.occurred_at:%Y-%m-%d %H:%M}"


class SubscriptionPreference(models.Model):
    """Opt-in or opt-out of one topic, beside the profile's global status."""

    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="preferences", db_index=False
    )
    topic = models.CharField(max_length=100)
    subscribed = models.BooleanField(default=True)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "topic"], name="preference_profile_topic")
        ]
        indexes = [models.Index(fields=["topic", "subscribed"], name="preference_topic_idx")]

    def __str__(self):
        state = "in" if self.subscribed else "out"
        return f"{self.topic}: opted {state}"


class ApiKey(models.Model):
    """A key for the ingestion API, stored only as its SHA-256 hash.

    Keys are 32 random bytes, so a plain, fast hash is enough: there is no
    dictionary to attack, and lookups by hash stay a single indexed query on
    every request. The full key is shown once, when it is created.

    Its scope says what it may do. A website's page hands its key to every
    visitor, so a key for a browser must only add data (``track``); editing,
    deleting, unsubscribing and re-identifying people takes a ``full`` key,
    kept on a server. Keys made before scopes existed are ``full`` (migration
    0007), so they keep working.
    """

    class Scope(models.TextChoices):
        TRACK = "track", "Track only"
        FULL = "full", "Full access"

    name = models.CharField(max_length=100)
    scope = models.CharField(
        max_length=10,
        choices=Scope.choices,
        default=Scope.TRACK,
        help_text=(
            "Track only: identify, track and batch calls (Vero users/track and events/track, "
            "Segment /v1/identify, /v1/track, /v1/batch). The one to embed in a website or app. "
            "Full access: also edit, tags, reidentify, unsubscribe, resubscribe and delete; "
            "keep it on a server, never in a browser."
        ),
    )
    prefix = models.CharField(
        max_length=12, editable=False, help_text="The key's first characters, to recognise it."
    )
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self):
        return self.revoked_at is None

    @property
    def is_full(self) -> bool:
        return self.scope == self.Scope.FULL

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()


class SeenMessage(models.Model):
    """A Segment ``messageId`` already applied, so a client's retry is not applied twice.

    Recorded in the same transaction as the writes of its batch: a batch
    that rolls back leaves no trace here, and a retry of it is applied.
    It names no profile, so erasing a person leaves nothing personal behind.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "message_id"], name="seen_message_unique")
        ]

    def __str__(self):
        return self.message_id


class Suppression(models.Model):
    """A person deleted with "stop them from coming back": the ingestion API
    accepts and discards writes for this user id or email.

    Only the SHA-256 digest of the identifier is kept (of the user id as
    sent; of the email trimmed and lower-cased), so the list names nobody in
    clear. Lifting one (deleting the row in Django admin) lets the person in
    again; the admin log records that with the digest only.
    """

    class Kind(models.TextChoices):
        USER_ID = "user_id", "User id"
        EMAIL = "email", "Email"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    digest = models.CharField("SHA-256", max_length=64)
    # The deletion job that added it (a plain id: profiles knows no segments).
    job_id = models.BigIntegerField("deletion job", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the index ingestion looks digests up by.
            models.UniqueConstraint(fields=["digest", "kind"], name="suppression_digest_kind")
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.digest[:12]}…"

    @staticmethod
    def digest_of(kind: str, value: str) -> str:
        """The digest ingestion and receipts compare: the same normalisation
        as the SQL that writes receipts (``lower(btrim(email))``)."""
        if kind == Suppression.Kind.EMAIL:
            value = value.strip(" ").lower()
        return hashlib.sha256(value.encode()).hexdigest()
