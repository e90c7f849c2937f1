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
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.workers import QCluster, backends, wait_for

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


def test_a_batch_that_locks_its_profiles_first_commits_and_the_plain_insert_fails():
    """profiles_erase locks its profiles FOR UPDATE before it deletes: the
    insert's own check at commit then waits for the batch, and it is the
    insert (not the batch) that fails. Ingestion avoids even that by taking
    FOR KEY SHARE on the profile before it writes."""
    profile = ProfileFactory()
    EventFactory(profile=profile)
    other = connections.create_connection("default")
    other.set_autocommit(False)
    other.inc_thread_sharing()  # its commit runs in a thread, as it waits
    outcome = {}
    try:
        with transaction.atomic():
            profiles_erase(profile_ids=[profile.pk])
            with other.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO profiles_event (profile_id, name, properties, occurred_at, "
                    "created_at) VALUES (%s, 'late', '{}', now(), now())",
                    [profile.pk],
                )  # no error yet: the check waits for the commit

            def commit():
                try:
                    other.commit()
                    outcome["insert"] = "committed"
                except IntegrityError:
                    outcome["insert"] = "failed"

            committer = threading.Thread(target=commit)
            committer.start()
            wait_for(
                lambda: backends(waiting_on_lock=True, query_prefix="COMMIT"),
                timeout=10,
                message="the insert's commit to wait for the batch",
            )
        committer.join(10)
    finally:
        other.dec_thread_sharing()
        other.close()
    assert outcome == {"insert": "failed"}
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
