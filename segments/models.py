import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from profiles.models import Profile
from profiles.stored_json import StoredJSONField


class Segment(models.Model):
    """A rule-based group of profiles, with its membership materialised at refresh.

    ``member_count`` is the size of the membership as of ``last_refreshed_at``:
    pages show it instead of counting a membership that may hold a million rows.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    rules = StoredJSONField(default=dict, blank=True)
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
    rules_at_confirmation = StoredJSONField(default=dict, blank=True)
    suppress = models.BooleanField("stop them from coming back", default=False)
    # Confirmed by a retention schedule in its owner's name (created_by),
    # not by someone typing the name in the dialog.
    started_by_schedule = models.BooleanField("started by a retention schedule", default=False)
    # When the receipt file was last written; older than finished_at (or
    # empty) for an ended job means the worker stopped before writing it, and
    # the watchdog writes it (segments.deletion.receipts).
    receipt_written_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_by_username = models.CharField("stopped by", max_length=150, blank=True)
    # The latest resume of a job that stopped part-way (each one is logged).
    resumed_by_username = models.CharField("last resumed by", max_length=150, blank=True)
    resumed_at = models.DateTimeField("last resumed at", null=True, blank=True)
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


class DeletionReceiptBatch(models.Model):
    """The receipt's entries written by one batch of a job: for each profile
    the batch erased, the SHA-256 digest of its user id (as stored) and of
    its email (trimmed, lower-cased), never the values. The two arrays run
    in step: position i of each is one erased profile; ``None`` where it had
    no user id (or no email).

    Written by the batch that erases the profiles, in its transaction and
    from the rows it deletes, so the receipt holds exactly who was erased.
    One row a batch, not one a profile: for a batch of 4,000 profiles that
    is one insert (about 6 ms) where 4,000 rows with their indexes and
    foreign-key checks took about 21 ms, a tenth of the batch. The arrays
    are stored uncompressed (``STORAGE EXTERNAL``): digests do not compress,
    and trying costs as much as the insert.
    """

    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="receipt_batches")
    user_id_sha256 = ArrayField(models.CharField(max_length=64, null=True))
    email_sha256 = ArrayField(models.CharField(max_length=64, null=True))

    class Meta:
        verbose_name = "deletion receipt batch"
        verbose_name_plural = "deletion receipt batches"

    def __str__(self):
        return f"Erased profiles of a batch of job {self.job_id}"


class DeletionBatch(models.Model):
    """One committed batch of a deletion job: how many profiles, how long
    (measured in the database, from the batch's first step to the statement
    that writes this row inside the batch's transaction: neither its commit
    nor the round trip is in it). The benchmark reads batch durations from here."""

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


class RetentionSchedule(models.Model):
    """Delete a segment's members automatically, every day or week.

    The schedule only decides *when*: each run refreshes the segment and
    starts an ordinary deletion job (``segments.retention.services``), with
    the same snapshot, batches, audit and email as a manual one. It holds no
    personal data: a digest of the rules it was confirmed for (not the rules,
    which may quote an address), counts and notes in words.

    ``next_run_at`` is the next slot; the dispatcher claims a slot by moving
    it forward in the transaction that finds it due, so two dispatchers never
    start two runs for one slot. ``last_slot`` is the last slot a run
    finished (recorded with its outcome): a task delivered again finds it
    taken and does nothing.
    """

    class Frequency(models.TextChoices):
        DAILY = "daily", "Every day"
        WEEKLY = "weekly", "Every week"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    segment = models.OneToOneField(
        Segment, on_delete=models.CASCADE, related_name="retention_schedule"
    )
    # Whoever confirmed the schedule (or last resumed it): runs confirm the
    # deletion in their name, and the emails go to them.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    owner_username = models.CharField("confirmed by", max_length=150)
    frequency = models.CharField(max_length=10, choices=Frequency.choices)
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices, null=True, blank=True)
    time_of_day = models.TimeField("at (time of day)")
    max_profiles = models.PositiveIntegerField("most profiles a run may delete")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    pause_reason = models.TextField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    # How many profiles the refreshed segment held when the brake stopped a
    # run (None when the pause was for another reason).
    brake_found = models.PositiveIntegerField(null=True, blank=True)
    # The email about a brake: owed once the pause commits, claimed before sending.
    brake_email_owed = models.BooleanField(default=False)
    rules_digest = models.CharField("digest of the rules confirmed", max_length=64)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_slot = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_note = models.TextField(blank=True)
    last_job = models.ForeignKey(
        "DeletionJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["segment__name"]
        indexes = [
            models.Index(
                fields=["next_run_at"],
                condition=Q(status="active"),
                name="retention_due_idx",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(frequency="daily", weekday__isnull=True)
                | Q(frequency="weekly", weekday__isnull=False),
                name="retention_weekday_iff_weekly",
            ),
            models.CheckConstraint(condition=Q(max_profiles__gte=1), name="retention_max_positive"),
        ]

    def __str__(self):
        return f"Retention schedule of {self.segment}"

    def get_absolute_url(self):
        return reverse("segments:retention", args=[self.segment_id])

    @property
    def is_paused(self):
        return self.status == self.Status.PAUSED

    @staticmethod
    def digest(rules) -> str:
        """Names a set of rules without copying them (a rule may quote an address)."""
        canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def rules_changed(self) -> bool:
        """The segment's rules are not the ones this schedule was confirmed for."""
        return self.rules_digest != self.digest(self.segment.rules)

    @classmethod
    def pause_for_rule_edit(cls, *, segment_id: int, username: str, now=None) -> bool:
        """New rules are a new set of people: the schedule waits for an
        Editor to review them. One UPDATE, so ``segments.services`` can call
        it without importing the retention package (which imports it)."""
        now = now or timezone.now()
        when = timezone.localtime(now).strftime("%-d %b %Y, %H:%M %Z")
        return bool(
            cls.objects.filter(segment_id=segment_id, status=cls.Status.ACTIVE).update(
                status=cls.Status.PAUSED,
                pause_reason=f"The rules changed on {when} by {username or 'someone'}; "
                "review who is in the segment and resume.",
                paused_at=now,
                brake_found=None,
                brake_email_owed=False,
                updated_at=now,
            )
        )

    @property
    def describe_when(self):
        """In words: "Every day at 03:00" or "Every Monday at 03:00"."""
        at = self.time_of_day.strftime("%H:%M")
        if self.frequency == self.Frequency.WEEKLY:
            return f"Every {self.get_weekday_display()} at {at}"
        return f"Every day at {at}"

    @property
    def when_phrase(self):
        """The same inside a sentence: "every Monday at 03:00"."""
        return "e" + self.describe_when[1:]
