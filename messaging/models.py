from django.db import models
from django.urls import reverse

from profiles.models import Profile


class Campaign(models.Model):
    """A message sent to a segment. Excluded segments are how a marketer
    "archives" people instead of deleting them."""

    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=255, blank=True)
    audience = models.ForeignKey(
        "segments.Segment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name="audience segment",
    )
    excluded_segments = models.ManyToManyField(
        "segments.Segment", blank=True, related_name="excluded_from_campaigns"
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("messaging:campaign_detail", args=[self.pk])


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
