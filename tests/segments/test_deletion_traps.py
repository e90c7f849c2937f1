"""The traps in our stack that the deletion job is built around, checked
rather than taken on faith (and caught here if an upgrade changes them)."""

import itertools
import threading

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone
from django_q.models import Task
from django_q.tasks import async_task

from profiles.erasure import profiles_erase
from profiles.models import Event, Profile
from tests.messaging.factories import MessageFactory
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.workers import QCluster, backends, row_locked, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_a_task_whose_worker_is_killed_is_handed_out_again_without_end(tmp_path):
    """The ORM broker delivers at least once: a task whose worker dies is
    handed out again `retry` seconds after it was handed out. A SIGKILL leaves
    no failed result behind, so `max_attempts` (3 in our settings) never
    stops it (django-q2 issue #327): only the job's own attempt counter can."""
    deliveries = tmp_path / "deliveries"
    retry = 2
    async_task("tests.task_probes.record_then_die", str(deliveries))
    max_attempts = settings.Q_CLUSTER["max_attempts"]
    cluster = QCluster(workers=1, timeout=1, retry=retry, slice_seconds=0).start()
    try:
        wait_for(
            lambda: (
                deliveries.exists() and len(deliveries.read_text().split("\n")) > max_attempts + 1
            ),
            timeout=30,
            message=f"more than {max_attempts} deliveries",
        )
    finally:
        cluster.kill()
    times = [float(line.split()[0]) for line in deliveries.read_text().split("\n") if line]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) > max_attempts
    # Not one of those deliveries counts as a failed attempt.
    assert not Task.objects.filter(func="tests.task_probes.record_then_die").exists()
    assert all(retry - 0.1 <= gap < retry + 2 for gap in gaps), gaps


def test_an_event_committed_mid_erasure_fails_an_unlocked_batch_at_commit():
    """Foreign keys are checked at commit (DEFERRABLE INITIALLY DEFERRED): a
    batch that deletes without locking its profiles first can have an event
    committed for one of them in between, and then fails at COMMIT."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT condeferrable, condeferred FROM pg_constraint "
            "WHERE conrelid = 'profiles_event'::regclass AND contype = 'f'"
        )
        assert cursor.fetchall() == [(True, True)]
    profile = ProfileFactory()
    EventFactory(profile=profile)

    with pytest.raises(IntegrityError, match="profiles_event"), transaction.atomic():
        Event.objects.filter(profile=profile)._raw_delete(connection.alias)
        _insert_event_elsewhere(profile.pk)  # commits at once: the profile is still there
        Profile.objects.filter(pk=profile.pk)._raw_delete(connection.alias)
    assert Profile.objects.filter(pk=profile.pk).exists()


def test_a_batch_that_locks_its_profiles_first_makes_a_concurrent_insert_wait_and_fail():
    """profiles_erase locks its profiles FOR UPDATE before its first statement.

    The batch is held mid-way (one of the person's messages is locked
    elsewhere, so it waits at the message UPDATE, after the lock and before
    its deletes). An event inserted for the profile meanwhile cannot commit:
    its foreign-key check at commit needs a KEY SHARE lock the batch's
    FOR UPDATE excludes, so it waits for the batch and then fails. Without
    the FOR UPDATE it commits at once, and a batch that had already deleted
    the events would delete the profile from under it. Ingestion avoids even
    the failure by taking FOR KEY SHARE on the profile before it writes.
    """
    profile = ProfileFactory()
    EventFactory(profile=profile)
    message = MessageFactory(profile=profile)
    outcome = {}

    def erase():
        try:
            with transaction.atomic():
                profiles_erase(profile_ids=[profile.pk])
            outcome["batch"] = "committed"
        finally:
            connections.close_all()

    other = connections.create_connection("default")
    other.set_autocommit(False)
    other.inc_thread_sharing()  # its commit runs in a thread, as it waits

    def commit():
        try:
            other.commit()
            outcome["insert"] = "committed"
        except IntegrityError:
            outcome["insert"] = "failed"

    eraser = threading.Thread(target=erase)
    committer = threading.Thread(target=commit)
    try:
        with row_locked("messaging_message", message.pk):
            eraser.start()
            wait_for(
                lambda: backends(waiting_on_lock=True, query_prefix="UPDATE"),
                timeout=10,
                message="the batch to wait at the message",
            )
            with other.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO profiles_event (profile_id, name, properties, occurred_at, "
                    "created_at) VALUES (%s, 'late', '{}', now(), now())",
                    [profile.pk],
                )
            committer.start()
            wait_for(
                lambda: (
                    "insert" in outcome or backends(waiting_on_lock=True, query_prefix="COMMIT")
                ),
                timeout=10,
                message="the insert's commit to end or wait",
            )
            assert "insert" not in outcome, "the insert committed under a batch in progress"
        eraser.join(10)
        committer.join(10)
    finally:
        other.dec_thread_sharing()
        other.close()
    assert outcome == {"batch": "committed", "insert": "failed"}
    assert not Profile.objects.filter(pk=profile.pk).exists()
    assert not Event.objects.filter(profile_id=profile.pk).exists()


def _insert_event_elsewhere(profile_id: int) -> None:
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "INSERT INTO profiles_event (profile_id, name, properties, occurred_at, "
                "created_at) VALUES (%s, 'late', '{}', %s, now())",
                [profile_id, timezone.now()],
            )
    finally:
        other.close()
