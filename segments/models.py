from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from profiles.models import Profile


class Segment(models.Model):
    """A rule-based group of profiles, with its membership materialised at refresh.

    ``member_count`` is the size of the membership as of ``last_refreshed_at``:
    pages show it instead of counting a membership that may hold a million rows.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict, blank=True)
    member_count = models.PositiveIntegerField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_requested_at = models.DateTimeField(null=True, blank=True)
    refresh_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # A membership older than this is flagged as stale in the deletion dialog.
    STALE_AFTER = timedelta(hours=1)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("segments:detail", args=[self.pk])

    @property
    def is_refreshing(self):
        """A refresh was asked for and has not finished (the refresh that
        serves a request clears it; a failed one records ``refresh_error``)."""
        return self.refresh_requested_at is not None and not self.refresh_error

    @property
    def is_stale(self):
        return (
            self.last_refreshed_at is None
            or timezone.now() - self.last_refreshed_at > self.STALE_AFTER
        )


class SegmentMembership(models.Model):
    # No index of its own: membership_unique starts with segment_id.
    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index for keyset pagination of a segment's members by profile id.
            models.UniqueConstraint(fields=["segment", "profile"], name="membership_unique")
        ]

    def __str__(self):
        return f"{self.profile_id} in {self.segment_id}"


class DeletionJobQuerySet(models.QuerySet):
    def unfinished(self):
        """Jobs that stopped part-way and are not closed (see is_unfinished)."""
        return self.filter(
            status__in=[DeletionJob.Status.FAILED, DeletionJob.Status.CANCELLED],
            closed_at__isnull=True,
            total__gt=F("deleted") + F("skipped"),
        )


class DeletionJob(models.Model):
    """One confirmed deletion of a segment's profiles, and its audit record.

    The profiles to delete are frozen in ``DeletionJobProfile`` at
    confirmation, so a refresh or a rule edit while the job runs cannot widen
    it. ``cursor`` is the highest snapshot profile id already handled; it moves
    in the same transaction as the batch it covers, which is what makes a job
    resumable after a crash at any point.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to start"
        RUNNING = "running", "Deleting"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)

    segment = models.ForeignKey(
        Segment, on_delete=models.SET_NULL, null=True, blank=True, related_name="deletion_jobs"
    )
    segment_name = models.CharField("segment name at confirmation", max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_username = models.CharField("confirmed by", max_length=150)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    cancel_requested = models.BooleanField(default=False)
    # What was confirmed, for the receipt: the rules as they were then (the
    # segment's may be edited later), and whether the people deleted are
    # kept from coming back (profiles.Suppression).
    rules_at_confirmation = models.JSONField(default=dict, blank=True)
    suppress = models.BooleanField("stop them from coming back", default=False)
    # When the receipt file was last written; older than finished_at (or
    # empty) for an ended job means the worker stopped before writing it, and
    # the watchdog writes it (segments.deletion.receipts).
    receipt_written_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_by_username = models.CharField("stopped by", max_length=150, blank=True)
    # A job that stopped part-way (failed, or stopped by someone) stays open
    # until it is resumed to the end or closed by someone who keeps the rest.
    closed_by_username = models.CharField("closed by", max_length=150, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    total = models.PositiveIntegerField("profiles requested", default=0)
    deleted = models.PositiveIntegerField("profiles deleted", default=0)
    skipped = models.PositiveIntegerField("profiles skipped", default=0)
    events_deleted = models.BigIntegerField(default=0)
    preferences_deleted = models.BigIntegerField(default=0)
    memberships_deleted = models.BigIntegerField(default=0)
    messages_anonymized = models.BigIntegerField(default=0)
    activity_anonymized = models.BigIntegerField(default=0)
    cursor = models.BigIntegerField(default=0)
    # Snapshot profiles behind the cursor that someone else held locked when
    # their batch ran: the job moves on and comes back to them at the end.
    deferred_profile_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # What the job is waiting for, for the page (empty when it is not waiting).
    waiting_for = models.TextField(blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    # Other segments that lost members to this job: recounted when it ends.
    touched_segment_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    batches = models.PositiveIntegerField(default=0)
    longest_batch_ms = models.PositiveIntegerField(default=0)

    # Interruptions in a row without progress (reset by every batch), and in all.
    attempts = models.PositiveIntegerField(default=0)
    interruptions = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField("confirmed at", auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DeletionJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["segment"],
                condition=Q(status__in=["pending", "running"]),
                name="one_active_deletion_per_segment",
            )
        ]
        indexes = [
            # The deletions page: newest first, optionally of one status.
            models.Index(fields=["status", "-id"], name="deletionjob_status_id_idx"),
            # The segment list's running or stopped-part-way deletion of each
            # segment, without reading its completed ones.
            models.Index(
                fields=["segment", "-id"],
                condition=~Q(status="completed"),
                name="deletionjob_segment_open_idx",
            ),
        ]

    def __str__(self):
        return f"Deletion #{self.pk} of {self.segment_name}"

    @property
    def is_active(self):
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_unfinished(self):
        """Stopped part-way and not closed: some confirmed profiles are left,
        and the segment cannot be deleted until this is resumed or closed."""
        return (
            self.status in (self.Status.FAILED, self.Status.CANCELLED)
            and self.remaining > 0
            and self.closed_at is None
        )

    @property
    def handled(self):
        return self.deleted + self.skipped

    @property
    def remaining(self):
        return max(0, self.total - self.handled)

    @property
    def percent_done(self):
        if not self.total:
            return 100 if self.status == self.Status.COMPLETED else 0
        return min(100, int(self.handled * 100 / self.total))


class DeletionJobProfile(models.Model):
    """The frozen set of a job: one row per profile id confirmed for deletion.

    ``profile_id`` is a plain integer, not a foreign key: these rows must
    outlive the profiles they name (for the audit and for verify_deletion),
    and erasure must not treat them as data that belongs to a profile.
    """

    pk = models.CompositePrimaryKey("job", "profile_id")
    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="snapshot")
    profile_id = models.BigIntegerField()

    class Meta:
        verbose_name = "deletion snapshot row"

    def __str__(self):
        return f"{self.profile_id} in job {self.job_id}"


class DeletionRunner(models.Model):
    """One of the batch runners of a job run in parallel (DELETION_RUNNERS > 1).

    Each runner owns the snapshot ids from ``low`` to ``high`` (inclusive;
    the runners' ranges are disjoint and cover the snapshot, cut when the job
    first runs) and keeps its own ``cursor`` (the highest id of its range
    already handled) and set-aside ids, which move in the transaction of the
    batch they cover, as the job's do for a single runner. The job's
    counters are the sum of its runners' batches. A job run by one runner
    has no rows here.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Working"
        # Saw the job cancelled, or ended by another runner, before its end.
        STOPPED = "stopped", "Stopped"
        # Its whole range handled, nothing set aside.
        DONE = "done", "Done"

    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="runners")
    number = models.PositiveSmallIntegerField()
    low = models.BigIntegerField()
    high = models.BigIntegerField()
    cursor = models.BigIntegerField()
    deferred_profile_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    total = models.PositiveIntegerField("snapshot rows in its range")
    handled = models.PositiveIntegerField("deleted or found gone", default=0)
    batches = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="one_runner_number_per_job")
        ]

    def __str__(self):
        return f"Runner {self.number} of job {self.job_id}: {self.low}-{self.high}"


class DeletionReceiptEntry(models.Model):
    """One erased profile in a job's receipt: SHA-256 digests of its user id
    (as stored) and of its email (trimmed, lower-cased), never the values.

    Written by the batch that erases the profile, in its transaction and
    from the row it deletes, so the receipt holds exactly who was erased.
    ``None`` where the profile had no user id (or no email).
    """

    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="receipt_entries")
    user_id_sha256 = models.CharField(max_length=64, null=True, blank=True)
    email_sha256 = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        verbose_name = "deletion receipt entry"
        verbose_name_plural = "deletion receipt entries"

    def __str__(self):
        return f"Erased profile in job {self.job_id}"


class DeletionBatch(models.Model):
    """One committed batch of a deletion job: how many profiles, how long
    (up to its last statement: it is written inside the batch's transaction,
    so its commit is not in it). The benchmark reads batch durations from here."""

    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="batch_log")
    profiles = models.PositiveIntegerField()
    duration_ms = models.PositiveIntegerField()
    finished_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["job", "finished_at"], name="deletionbatch_job_idx")]

    def __str__(self):
        return f"{self.profiles} profiles in {self.duration_ms} ms"


class ProfileExport(models.Model):
    """Who downloaded the members of a segment as a CSV, and when.

    The audit of "Export before deleting". It names the marketer and the
    segment, never a member: the file itself leaves the system on purpose,
    and nothing here is a copy of it. Written before the first byte is sent,
    so a download that is interrupted (or a server that dies mid-stream) is
    still on record; ``rows_exported`` and ``finished_at`` say how far it got.
    """

    class Status(models.TextChoices):
        STARTED = "started", "Started"
        COMPLETED = "completed", "Completed"
        INTERRUPTED = "interrupted", "Interrupted"
        REFUSED = "refused", "Refused (the segment was refreshed)"

    segment = models.ForeignKey(
        Segment, on_delete=models.SET_NULL, null=True, blank=True, related_name="exports"
    )
    segment_name = models.CharField("segment name at download", max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    username = models.CharField("downloaded by", max_length=150)
    membership_token = models.CharField("membership stamp", max_length=64)
    expected_count = models.PositiveIntegerField("profiles the dialog showed")
    rows_exported = models.PositiveIntegerField("profiles in the file", null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.STARTED)
    created_at = models.DateTimeField("downloaded at", auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.username}: {self.segment_name} ({self.created_at:%Y-%m-%d %H:%M})"


class DeletionNotice(models.Model):
    """The email owed to whoever confirmed a job, one per ending of the job.

    Written in the transaction that ends the job (``_finish``), so an ending
    without its notice cannot exist, whatever kills the worker afterwards; a
    sender claims it atomically before sending (see
    ``segments.deletion.notices``). It holds counts only: the recipient's
    address is read from the user at send time, and nothing here names a
    deleted person.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Not sent yet"
        SENT = "sent", "Sent"
        FAILED = "failed", "Could not be sent"
        NO_RECIPIENT = "no_recipient", "No email address"

    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="notices")
    # 1 for the job's first ending; a job resumed after failing ends again.
    ending = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=DeletionJob.Status.choices)
    total = models.PositiveIntegerField()
    deleted = models.PositiveIntegerField()
    skipped = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    # A sender owns the notice until then; after it, the notice is free to
    # be taken again (a sender killed mid-send, or a retry after a failure).
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The last failure's exception class (never its text: it may quote the
    # message or the address).
    error = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "ending"], name="one_notice_per_job_ending")
        ]
        indexes = [
            models.Index(
                fields=["claimed_until"],
                condition=Q(state="pending"),
                name="deletionnotice_pending_idx",
            )
        ]

    def __str__(self):
        return f"Notice {self.ending} of deletion #{self.job_id}: {self.state}"
