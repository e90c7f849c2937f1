"""The email to whoever confirmed a deletion, once for each time the job ends.

The worker tests run real `qcluster` processes with Django's file backend
(or a test backend from tests/mail_backends.py) pointed at a temporary
directory, and read what they wrote: the worker is another process, so
Django's test outbox cannot see its emails.
"""

import email
import email.policy
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from segments.deletion import notices
from segments.deletion import services as deletion
from segments.models import DeletionJob, DeletionNotice
from tests.segments.population import build_population
from tests.workers import QCluster, row_locked, wait_for

SITE = "https://admin.example.test"
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


def read_emails(directory: Path) -> list:
    """Every email the file backend wrote, in the order it wrote them."""
    found = []
    for path in sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime_ns):
        for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if chunk.strip():
                found.append(email.message_from_bytes(chunk, policy=email.policy.default))
    return found


def subject(message) -> str:
    return " ".join(str(message["Subject"]).split())


def cluster(outbox: Path, *, backend=FILE_BACKEND, **env) -> QCluster:
    return QCluster(
        extra_env={
            "EMAIL_BACKEND": backend,
            "EMAIL_FILE_PATH": str(outbox),
            "SITE_URL": SITE,
            "DELETION_LOCK_WAIT_SECONDS": "1",
            **env,
        }
    )


def start(population, user):
    return deletion.deletion_start(
        segment=population.segment,
        user=user,
        typed_name=population.segment.name,
        expected_count=len(population.doomed),
    ).job


def ended(job, status):
    return DeletionJob.objects.filter(pk=job.pk, status=status).first()


def notices_settled(job, count):
    return (
        DeletionNotice.objects.filter(job=job).exclude(state="pending").count() == count
        and DeletionNotice.objects.filter(job=job).count() == count
    )


def identifiers_of(profile_ids) -> list[str]:
    """The people's emails (as stored and lower-cased) and user ids: capture
    them before the job runs, while the profiles still exist."""
    from profiles.models import Profile

    found = []
    for user_id, address in Profile.objects.filter(pk__in=profile_ids).values_list(
        "user_id", "email"
    ):
        found += [value for value in (user_id, address, address.strip().lower()) if value]
    assert len(found) >= len(profile_ids), "every deleted person has an identifier to look for"
    return found


def decoded(message) -> str:
    """The headers and every text part, decoded (a body may be sent as
    quoted-printable or base64, where a plain search would miss an address)."""
    parts = [f"{name}: {value}" for name, value in message.items()]
    parts += [
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    ]
    return "\n".join(parts)


def assert_names_nobody(message, log: str, deleted: list[str]):
    """Counts, the segment's name and the job's id: none of the deleted
    people's emails or user ids, in the email or in the worker's log."""
    text = decoded(message)
    for identifier in deleted:
        assert identifier not in text, f"the email names a deleted person ({identifier})"
        assert identifier not in log, f"the log names a deleted person ({identifier})"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_that_fails_and_is_resumed_to_the_end_sends_one_email_per_ending(tmp_path, alice):
    population = build_population(doomed=20, survivors=10, events_each=1)
    held = sorted(population.doomed)[-1]
    deleted = identifiers_of(population.doomed)
    job = start(population, alice)

    with cluster(tmp_path) as worker:
        with row_locked("profiles_profile", held):
            wait_for(lambda: ended(job, "failed"), timeout=60, message="the job to fail")
            wait_for(lambda: notices_settled(job, 1), timeout=30, message="the first email")
        deletion.deletion_resume(job=job, user=alice)
        wait_for(lambda: ended(job, "completed"), timeout=60, message="the job to complete")
        wait_for(lambda: notices_settled(job, 2), timeout=30, message="the second email")
        time.sleep(2)  # room for a duplicate to show up
        log = worker.log()

    failed, completed = read_emails(tmp_path)
    assert [m["To"] for m in (failed, completed)] == ["alice@example.com"] * 2
    assert subject(failed) == (
        "Deletion from “Trial users” failed: 19 of 20 deleted; resume it to delete the other 1"
    )
    assert "choose “Resume”" in failed.get_content()
    assert subject(completed) == "20 profiles deleted from “Trial users”"
    body = completed.get_content()
    assert f"{SITE}/segments/{population.segment.pk}/#deletion" in body
    assert f"Deletion #{job.pk}," in body
    assert failed["Message-ID"] != completed["Message-ID"]
    assert list(DeletionNotice.objects.filter(job=job).values_list("ending", "state")) == [
        (1, "sent"),
        (2, "sent"),
    ]
    for message in (failed, completed):
        assert_names_nobody(message, log, deleted)
    assert "Traceback" not in log, log


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stopped_job_emails_once_and_without_smtp_the_worker_prints_it(tmp_path, alice):
    """The default console backend, as `make run` has it: the email is in
    the worker's output."""
    population = build_population(doomed=4, survivors=2, events_each=0)
    job = start(population, alice)
    deletion.deletion_cancel(job=job, user=alice)

    with cluster(tmp_path, backend="django.core.mail.backends.console.EmailBackend") as worker:
        wait_for(lambda: ended(job, "cancelled"), timeout=60, message="the job to stop")
        wait_for(lambda: notices_settled(job, 1), timeout=30, message="the email")
        time.sleep(2)
        log = worker.log()

    assert log.count("Message-ID: <deletion-") == 1, log
    assert f"Message-ID: <deletion-{job.pk}-ending-1@admin.example.test>" in log
    assert "To: alice@example.com" in log
    assert "after deleting 0 of the 4 profiles you confirmed. The other 4 were not touched" in log
    assert DeletionNotice.objects.get(job=job).state == "sent"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_before_the_email_is_out_still_sends_it_exactly_once(tmp_path, alice):
    """The worker dies inside the send, after the job's last commit and after
    it claimed the notice: the next worker to start sends it, once."""
    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)
    marker = tmp_path / "died"
    outbox = tmp_path / "outbox"
    env = {"TEST_MAIL_DIE_MARKER": str(marker), "DELETION_NOTICE_LEASE_SECONDS": "2"}

    with cluster(outbox, backend="tests.mail_backends.DieOnceBackend", **env) as first:
        wait_for(marker.exists, timeout=60, message="the worker to die while sending")
        first.kill()
    assert ended(job, "completed")
    assert read_emails(outbox) == []
    notice = DeletionNotice.objects.get(job=job)
    assert (notice.state, notice.attempts) == ("pending", 1)

    time.sleep(2)  # the dead sender's lease runs out
    with cluster(outbox, backend="tests.mail_backends.DieOnceBackend", **env):
        wait_for(lambda: notices_settled(job, 1), timeout=30, message="the email")
        time.sleep(2)

    (message,) = read_emails(outbox)
    assert subject(message) == "6 profiles deleted from “Trial users”"
    notice.refresh_from_db()
    assert (notice.state, notice.attempts) == ("sent", 2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_mail_server_that_refuses_the_email_does_not_fail_the_job(tmp_path, alice):
    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)

    with cluster(tmp_path, backend="tests.mail_backends.RefusingBackend") as worker:
        wait_for(lambda: notices_settled(job, 1), timeout=60, message="the send to fail")
        log = worker.log()

    job.refresh_from_db()
    assert (job.status, job.deleted, job.error) == ("completed", 6, "")
    notice = DeletionNotice.objects.get(job=job)
    assert (notice.state, notice.error, notice.attempts) == ("failed", "SMTPDataError", 1)
    assert f"Deletion job {job.pk}: the email for ending 1 was not sent (SMTPDataError" in log
    assert "alice@example.com" not in log and "Refused for the test" not in log


# --- In the test process (Django's test outbox) ----------------------------------


# Here the test's transaction never commits, so the send that an ending
# schedules for after its commit does not run by itself.


@pytest.mark.django_db
@override_settings(SITE_URL=SITE)
def test_the_ending_owes_its_email_in_its_own_transaction(
    alice, django_capture_on_commit_callbacks
):
    population = build_population(doomed=3, survivors=1, events_each=0)
    job = start(population, alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deletion._finish(job.pk, DeletionJob.Status.CANCELLED)
    # Committed with the ending, not sent yet: a crash here leaves it owed.
    notice = DeletionNotice.objects.get(job=job)
    assert (notice.ending, notice.status, notice.state, notice.total) == (
        1,
        "cancelled",
        "pending",
        3,
    )
    assert mail.outbox == []
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1
    notice.refresh_from_db()
    assert notice.state == "sent" and notice.sent_at


@pytest.mark.django_db
def test_a_notice_already_claimed_by_another_sender_is_not_sent_again(alice):
    population = build_population(doomed=2, survivors=1, events_each=0)
    job = start(population, alice)
    deletion._finish(job.pk, DeletionJob.Status.COMPLETED)
    assert notices._claim(job_id=job.pk) is not None  # another sender holds it now
    assert notices.deletion_notices_send(job_id=job.pk) == 0
    assert notices.deletion_notices_send() == 0
    assert mail.outbox == []


@pytest.mark.django_db
@override_settings(EMAIL_BACKEND="tests.mail_backends.UnreachableBackend")
def test_an_unreachable_mail_server_is_tried_three_times_a_while_apart_then_given_up(alice):
    population = build_population(doomed=2, survivors=1, events_each=0)
    job = start(population, alice)
    deletion._finish(job.pk, DeletionJob.Status.COMPLETED)
    for attempt in (1, 2):
        assert notices.deletion_notices_send() == 0
        notice = DeletionNotice.objects.get(job=job)
        assert (notice.state, notice.attempts, notice.error) == (
            "pending",
            attempt,
            "ConnectionRefusedError",
        )
        assert notice.claimed_until > timezone.now() + timedelta(seconds=250)
        assert notices.deletion_notices_send() == 0  # not before its time
        assert DeletionNotice.objects.get(job=job).attempts == attempt
        DeletionNotice.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    notices.deletion_notices_send()
    notice.refresh_from_db()
    assert (notice.state, notice.attempts) == ("failed", 3)
    DeletionNotice.objects.update(claimed_until=None)
    assert notices.deletion_notices_send() == 0
    assert DeletionNotice.objects.get(job=job).attempts == 3
    job.refresh_from_db()
    assert job.status == "completed"


@pytest.mark.django_db
def test_someone_without_an_email_address_is_skipped_and_it_says_so(alice):
    alice.email = ""
    alice.save()
    population = build_population(doomed=2, survivors=1, events_each=0)
    job = start(population, alice)
    deletion._finish(job.pk, DeletionJob.Status.COMPLETED)
    notices.deletion_notices_send()
    assert DeletionNotice.objects.get(job=job).state == "no_recipient"
    assert mail.outbox == []


@pytest.mark.django_db
@override_settings(SITE_URL=SITE)
def test_a_job_whose_segment_was_deleted_links_to_the_deletions_page(alice):
    population = build_population(doomed=2, survivors=1, events_each=0)
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(segment=None, status="running")
    deletion._finish(job.pk, DeletionJob.Status.COMPLETED)
    notices.deletion_notices_send()
    (message,) = mail.outbox
    assert f"{SITE}/segments/deletions/" in message.body
    assert "The segment has since been deleted" in message.body
