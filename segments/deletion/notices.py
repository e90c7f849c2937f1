"""The email to whoever confirmed a deletion, once for each time the job ends.

A job ends (completed, failed, cancelled) in ``services._finish``; a failed
job that is resumed ends again later, and each ending gets its own email.

- **Never lost to a crash.** The ending writes a ``DeletionNotice`` row in
  its own transaction (``deletion_notice_record``), so no ending commits
  without its notice. Sending starts once that transaction has committed, in
  the same process (the worker that ran the last batch). A process killed
  before or while sending leaves the notice pending; the watchdog (every
  worker start, the minute schedule, ``serve``'s sweep) sends it.
- **Never twice.** A sender claims a notice (row lock, then a lease written
  and committed) before it sends, and only the claim it holds can mark it
  sent; two sweeps, or a sweep and the worker, cannot both take it. The one
  case left is a sender killed after the mail server accepted the email but
  before it recorded that (milliseconds): the next sweep sends it again once
  the lease is over, with the same Message-ID, which mail clients use to
  show one email.
- **Retries.** A send that could not even connect (``open()`` raised:
  nothing was handed over) is tried again after
  DELETION_NOTICE_RETRY_SECONDS, three attempts in all. A failure after
  that point (the server refused the email, or the connection broke while
  sending) is not retried, since the email may have gone out; it is logged
  and shown on the deletions page. Nothing here ever fails the job.
- **Nothing about the deleted people.** The email and the log lines carry
  the segment's name, the job's id and counts; the recipient's address is
  read from their user at send time and never logged or stored here.
"""

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from segments.models import DeletionJob, DeletionNotice

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def deletion_notice_record(*, job: DeletionJob) -> DeletionNotice:
    """Owe an email for this ending of ``job``. Called inside the transaction
    that ends the job, with the job's row locked; sending starts after it
    commits."""
    ending = DeletionNotice.objects.filter(job=job).count() + 1
    notice = DeletionNotice.objects.create(
        job=job,
        ending=ending,
        status=job.status,
        total=job.total,
        deleted=job.deleted,
        skipped=job.skipped,
    )
    transaction.on_commit(lambda: deletion_notices_send(job_id=job.pk), robust=True)
    return notice


def deletion_notices_send(*, job_id: int | None = None) -> int:
    """Send every notice that is due (of one job, or of all jobs): pending,
    and not held by another sender. Returns how many were sent."""
    sent = 0
    while True:
        claimed = _claim(job_id=job_id)
        if claimed is None:
            return sent
        try:
            sent += _send(claimed)
        except Exception as exc:
            # A bug or a database error while sending: the job stays ended.
            logger.exception("Deletion job %s: sending its notice failed", claimed.job_id)
            _failed(claimed, exc, retry=False)


def _claim(*, job_id: int | None) -> DeletionNotice | None:
    now = timezone.now()
    due = DeletionNotice.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        state=DeletionNotice.State.PENDING,
    )
    if job_id is not None:
        due = due.filter(job_id=job_id)
    with transaction.atomic():
        notice = due.select_for_update(skip_locked=True).order_by("id").first()
        if notice is None:
            return None
        notice.attempts += 1
        notice.claimed_until = now + timedelta(seconds=settings.DELETION_NOTICE_LEASE_SECONDS)
        notice.save(update_fields=["attempts", "claimed_until"])
    return notice


def _send(notice: DeletionNotice) -> int:
    job = DeletionJob.objects.select_related("created_by", "segment").get(pk=notice.job_id)
    address = job.created_by.email if job.created_by else ""
    if not address:
        _settle(notice, DeletionNotice.State.NO_RECIPIENT)
        logger.warning(
            "Deletion job %s: ending %s not emailed: whoever confirmed it has no email address",
            job.pk,
            notice.ending,
        )
        return 0
    message = _message(notice, job, address)
    connection = get_connection()
    try:
        connection.open()
    except Exception as exc:
        # Nothing was handed over: safe to try again later.
        _failed(notice, exc, retry=notice.attempts < MAX_ATTEMPTS)
        return 0
    try:
        connection.send_messages([message])
    except Exception as exc:
        # It may or may not have gone out: not sent again.
        _failed(notice, exc, retry=False)
        return 0
    finally:
        try:
            connection.close()
        except Exception:
            logger.info("Deletion job %s: closing the mail connection failed", job.pk)
    _settle(notice, DeletionNotice.State.SENT)
    logger.info(
        "Deletion job %s: ending %s (%s) emailed to user %s",
        job.pk,
        notice.ending,
        notice.status,
        job.created_by_id,
    )
    return 1


def _settle(notice: DeletionNotice, state: str, *, error: str = "") -> None:
    """Record the outcome, if this sender's claim still holds (``attempts``
    names the claim: a sender whose lease ran out cannot overwrite a newer
    one's result)."""
    DeletionNotice.objects.filter(
        pk=notice.pk, attempts=notice.attempts, state=DeletionNotice.State.PENDING
    ).update(
        state=state,
        error=error,
        claimed_until=None,
        sent_at=timezone.now() if state == DeletionNotice.State.SENT else None,
    )


def _failed(notice: DeletionNotice, exc: Exception, *, retry: bool) -> None:
    error = type(exc).__name__[:200]
    if retry:
        retry_at = timezone.now() + timedelta(seconds=settings.DELETION_NOTICE_RETRY_SECONDS)
        DeletionNotice.objects.filter(
            pk=notice.pk, attempts=notice.attempts, state=DeletionNotice.State.PENDING
        ).update(error=error, claimed_until=retry_at)
    else:
        _settle(notice, DeletionNotice.State.FAILED, error=error)
    # The exception's text is left out: it may quote the address or the message.
    logger.warning(
        "Deletion job %s: the email for ending %s was not sent (%s, attempt %s); %s",
        notice.job_id,
        notice.ending,
        error,
        notice.attempts,
        "will try again" if retry else "giving up",
    )


def _message(notice: DeletionNotice, job: DeletionJob, address: str) -> EmailMessage:
    name = " ".join(job.segment_name.split())
    remaining = max(0, notice.total - notice.deleted - notice.skipped)
    if notice.status == DeletionJob.Status.COMPLETED:
        subject = (
            f"{notice.deleted:,} profile{'s' if notice.deleted != 1 else ''} deleted from “{name}”"
        )
    elif notice.status == DeletionJob.Status.CANCELLED:
        subject = f"Deletion from “{name}” stopped: {notice.deleted:,} of {notice.total:,} deleted"
    else:
        subject = (
            f"Deletion from “{name}” failed: {notice.deleted:,} of {notice.total:,} deleted"
            f"; resume it to delete the other {remaining:,}"
        )
    if job.segment_id:
        link = settings.SITE_URL + job.segment.get_absolute_url() + "#deletion"
    else:
        link = settings.SITE_URL + reverse("segments:deletion_history")
    body = render_to_string(
        "segments/email/deletion_notice.txt",
        {
            "notice": notice,
            "job": job,
            "segment_name": name,
            "remaining": remaining,
            "link": link,
            "segment_exists": job.segment_id is not None,
        },
    )
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return EmailMessage(
        subject=subject,
        body=body,
        to=[address],
        headers={"Message-ID": f"<deletion-{job.pk}-ending-{notice.ending}@{host}>"},
    )
