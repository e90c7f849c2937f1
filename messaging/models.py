from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from profiles.models import Profile


class Campaign(models.Model):
    """A message to the people of some segments, but those of any excluded
    segment. Excluding a segment is how a marketer "archives" people instead
    of deleting them; the audience is fixed once the campaign is sent."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENT = "sent", "Sent"

    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="campaign_status_idx")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("messaging:campaign_detail", args=[self.pk])

    @property
    def audience_editable(self):
        """A sent campaign keeps the audience it was sent to, for its report."""
        return self.status != self.Status.SENT


class AudienceSegment(models.Model):
    """One segment of a campaign's audience: included, or excluded.

    A segment is in a campaign's audience once, in one mode (the unique
    constraint): "both included and excluded" cannot be stored. Exclusion
    wins over inclusion: someone in an included and an excluded segment is
    not sent to.
    """

    class Mode(models.TextChoices):
        INCLUDE = "include", "Included"
        EXCLUDE = "exclude", "Excluded"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="audience")
    segment = models.ForeignKey(
        "segments.Segment", on_delete=models.CASCADE, related_name="campaign_audiences"
    )
    mode = models.CharField(max_length=10, choices=Mode.choices)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["mode", "segment__name"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "segment"], name="audience_segment_once")
        ]
        indexes = [models.Index(fields=["segment", "mode"], name="audience_segment_idx")]

    def __str__(self):
        return f"{self.get_mode_display()}: segment {self.segment_id} in {self.campaign_id}"


class AudienceChange(models.Model):
    """Who changed a campaign's audience, when, and how: the audit trail the
    campaign page shows. ``before`` and ``after`` are the segment's mode
    ("" when it was not in the audience), which is all an undo needs. The
    segment's name is kept, so the record reads the same after the segment
    is deleted."""

    class Kind(models.TextChoices):
        EDIT = "edit", "Edited on the campaign page"
        ARCHIVE = "archive", "Excluded instead of deleting its profiles"
        UNDO = "undo", "Undone"
        SEGMENT_DELETED = "segment_deleted", "The segment was deleted"

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="audience_changes"
    )
    segment = models.ForeignKey(
        "segments.Segment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    segment_name = models.CharField(max_length=200)
    before = models.CharField(max_length=10, choices=AudienceSegment.Mode.choices, blank=True)
    after = models.CharField(max_length=10, choices=AudienceSegment.Mode.choices, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.EDIT)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_by_username = models.CharField("changed by", max_length=150, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self):
        return f"{self.changed_by_username}: {self.describe()}"

    def describe(self) -> str:
        """The change in plain words: "excluded Churned", "stopped excluding Churned"."""
        verbs = {
            ("", "include"): "included",
            ("", "exclude"): "excluded",
            ("include", ""): "stopped including",
            ("exclude", ""): "stopped excluding",
            ("include", "exclude"): "excluded (instead of including)",
            ("exclude", "include"): "included (instead of excluding)",
        }
        return f"{verbs.get((self.before, self.after), 'changed')} {self.segment_name}"


class Message(models.Model):
    """One send of a campaign to one profile.

    Kept when the profile is erased, so reports keep counting it: the link to
    the profile is cleared, and so is every field in PERSONAL_FIELDS;
    ``anonymized_on`` records the day, which is how verify_deletion finds the
    rows a job kept without keeping any trace of whose they were.
    """

    PERSONAL_FIELDS = ("recipient_email",)

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="messages")
    profile = models.ForeignKey(
        Profile, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    recipient_email = models.EmailField(max_length=254, blank=True, default="")
    sent_at = models.DateTimeField()
    anonymized_on = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [models.Index(fields=["campaign", "sent_at"], name="message_campaign_idx")]

    def __str__(self):
        return f"{self.campaign} to {self.recipient_email or 'deleted profile'}"

    @property
    def is_anonymized(self):
        return self.profile_id is None


class MessageActivity(models.Model):
    """An open or a click of a message.

    It carries its own link to the profile, so erasure finds most of a batch's
    activity with one indexed lookup; it also erases every row of the person's
    messages, whatever its own link says. A clicked URL is kept cut down to
    scheme, host and path (``profiles.erasure.url_kept_sql``).
    """

    PERSONAL_FIELDS = ("ip_address", "user_agent")
    PERSONAL_URL_FIELDS = ("url",)

    OPEN = "open"
    CLICK = "click"
    KIND_CHOICES = [(OPEN, "Open"), (CLICK, "Click")]

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="activities")
    profile = models.ForeignKey(
        Profile, on_delete=models.SET_NULL, null=True, blank=True, related_name="message_activity"
    )
    kind = models.CharField(max_length=10, choices=KIND_CHOICES)
    occurred_at = models.DateTimeField()
    url = models.URLField("clicked URL", max_length=2000, blank=True, default="")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True, default="")
    anonymized_on = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "message activity"
        indexes = [models.Index(fields=["message", "kind"], name="activity_message_kind_idx")]

    def __str__(self):
        return f"{self.get_kind_display()} of message {self.message_id}"
