"""The ingestion services, and how they behave while profiles are being erased."""

import threading
import time

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test import Client
from django.utils import timezone

from profiles import ingestion
from profiles.api_input import IdentifyCall, Identity, TrackCall
from profiles.erasure import profiles_erase
from profiles.models import Event, Profile, SeenMessage
from profiles.services import api_key_create
from tests.profiles.factories import EventFactory, ProfileFactory

WAIT_SECONDS = 10


def identify(user_id=None, email="", **data):
    return IdentifyCall(identity=Identity(user_id=user_id, email=email), data=data)


def track(user_id=None, email="", name="signed_in", message_id=None):
    return TrackCall(
        identity=Identity(user_id=user_id, email=email),
        name=name,
        data={},
        occurred_at=timezone.now(),
        message_id=message_id,
    )


# --- the services ------------------------------------------------------------------


@pytest.mark.django_db
def test_identify_reports_whether_it_created_the_profile():
    created = ingestion.profile_identify(call=identify("u1", plan="pro"))
    again = ingestion.profile_identify(call=identify("u1", seats=3))
    assert created.created and not again.created
    assert created.pk == again.pk
    assert Profile.objects.get().properties == {"plan": "pro", "seats": 3}


@pytest.mark.django_db
def test_identify_by_email_uses_the_oldest_profile_with_that_email():
    oldest = ProfileFactory(user_id="a", email="ada@example.com", properties={})
    ProfileFactory(user_id="b", email="ada@example.com", properties={})
    ref = ingestion.profile_identify(call=identify(email="ada@example.com", x=1))
    assert ref.pk == oldest.pk
    oldest.refresh_from_db()
    assert oldest.properties == {"x": 1}


@pytest.mark.django_db
def test_a_refusal_leaves_the_callers_transaction_usable():
    with transaction.atomic():
        with pytest.raises(ingestion.ProfileNotFound):
            ingestion.profile_edit(identity=Identity(user_id="ghost", email=""), changes={})
        assert not Profile.objects.exists()


@pytest.mark.django_db
def test_a_segment_batch_creates_each_new_profile_once():
    api_key, _ = api_key_create(name="k", scope="full")
    calls = [track("u1"), identify("u1", a=1), track("u1"), track(email="bea@example.com")]
    result = ingestion.segment_batch_apply(api_key=api_key, calls=[*calls, None])
    assert (result.applied, result.duplicates, result.ignored) == (4, 0, 1)
    assert Profile.objects.count() == 2
    assert Profile.objects.get(user_id="u1").events.count() == 2


@pytest.mark.django_db
def test_message_ids_are_seen_per_api_key():
    first, _ = api_key_create(name="one", scope="full")
    second, _ = api_key_create(name="two", scope="full")
    ingestion.segment_batch_apply(api_key=first, calls=[track("u1", message_id="m")])
    result = ingestion.segment_batch_apply(api_key=second, calls=[track("u1", message_id="m")])
    assert result.applied == 1
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_old_seen_message_ids_can_be_pruned():
    api_key, _ = api_key_create(name="k", scope="full")
    ingestion.segment_batch_apply(api_key=api_key, calls=[track("u1", message_id="m")])
    assert ingestion.seen_messages_prune(before=timezone.now() - timezone.timedelta(days=1)) == 0
    assert ingestion.seen_messages_prune(before=timezone.now() + timezone.timedelta(days=1)) == 1
    assert not SeenMessage.objects.exists()


class _Deadlock(Exception):
    sqlstate = ingestion.DEADLOCK_DETECTED


@pytest.mark.django_db(transaction=True)
def test_a_transaction_that_lost_a_deadlock_is_run_again():
    attempts = []

    @ingestion.ingestion_transaction
    def flaky():
        attempts.append(1)
        Profile.objects.create(user_id=f"u{len(attempts)}")
        if len(attempts) == 1:
            raise OperationalError("deadlock detected") from _Deadlock()
        return "done"

    assert flaky() == "done"
    assert len(attempts) == 2
    assert list(Profile.objects.values_list("user_id", flat=True)) == ["u2"]


# --- ingestion during an erasure -------------------------------------------------------


def _wait_until_someone_waits_for_a_lock():
    deadline = time.monotonic() + WAIT_SECONDS
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("nobody waited for the lock")


class _Thread(threading.Thread):
    """Runs ``target`` on its own database connection and keeps what it returned or raised."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.result, self.error = target, None, None

    def run(self):
        try:
            self.result = self.target()
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            connections.close_all()

    def outcome(self):
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "the thread is still waiting"
        if self.error:
            raise self.error
        return self.result


def _erase_while_holding_the_lock(profile_pk, locked: threading.Event, go: threading.Event):
    """An erasure batch that locks the profile, waits for ``go``, then erases it."""

    def run():
        with transaction.atomic():
            list(Profile.objects.select_for_update().filter(pk=profile_pk))
            locked.set()
            assert go.wait(WAIT_SECONDS)
            return profiles_erase(profile_ids=[profile_pk])

    return _Thread(run)


@pytest.mark.django_db(transaction=True)
def test_an_event_for_a_profile_being_erased_lands_on_a_new_profile(client):
    _, key = api_key_create(name="k", scope="full")
    old = ProfileFactory(user_id="u1", properties={"plan": "pro"})
    EventFactory(profile=old, name="before")
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(old.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)

    body = {"identity": {"id": "u1"}, "event_name": "during", "tracking_api_key": key}
    ingester = _Thread(
        lambda: Client().post("/api/v2/events/track", body, content_type="application/json")
    )
    ingester.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    assert eraser.outcome().deleted == 1
    response = ingester.outcome()
    assert response.status_code == 200, response.content
    new = Profile.objects.get(user_id="u1")
    assert new.pk != old.pk
    assert new.properties == {}
    assert new.subscribed is True
    assert list(new.events.values_list("name", flat=True)) == ["during"]
    assert not Event.objects.filter(name="before").exists()


@pytest.mark.django_db(transaction=True)
def test_an_identify_for_a_profile_being_erased_creates_a_new_profile():
    old = ProfileFactory(user_id="u1", properties={"plan": "pro"})
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(old.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)

    ingester = _Thread(lambda: ingestion.profile_identify(call=identify("u1", seats=2)))
    ingester.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    eraser.outcome()
    ref = ingester.outcome()
    assert ref.created
    new = Profile.objects.get(user_id="u1")
    assert (new.pk, new.properties, new.subscribed) == (ref.pk, {"seats": 2}, True)


@pytest.mark.django_db(transaction=True)
def test_an_edit_for_a_profile_being_erased_finds_it_gone():
    old = ProfileFactory(user_id="u1")
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(old.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)

    ingester = _Thread(
        lambda: ingestion.profile_edit(identity=Identity(user_id="u1", email=""), changes={})
    )
    ingester.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    eraser.outcome()
    with pytest.raises(ingestion.ProfileNotFound):
        ingester.outcome()
    assert not Profile.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_segment_batch_for_profiles_being_erased_lands_on_new_profiles():
    api_key, _ = api_key_create(name="k", scope="full")
    doomed = ProfileFactory(user_id="u1")
    kept = ProfileFactory(user_id="u2")
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(doomed.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)

    calls = [track("u2"), identify("u1", a=1), track("u1")]
    ingester = _Thread(lambda: ingestion.segment_batch_apply(api_key=api_key, calls=calls))
    ingester.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    eraser.outcome()
    assert ingester.outcome().applied == 3
    new = Profile.objects.get(user_id="u1")
    assert new.pk != doomed.pk
    assert new.properties == {"a": 1}
    assert new.events.count() == 1
    assert kept.events.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_an_ingestion_in_flight_and_erases_its_event_too():
    profile = ProfileFactory(user_id="u1")
    recorded, commit = threading.Event(), threading.Event()

    def ingest():
        with transaction.atomic():
            ingestion.event_track(call=track("u1", name="in flight"))
            recorded.set()
            assert commit.wait(WAIT_SECONDS)

    ingester = _Thread(ingest)
    ingester.start()
    assert recorded.wait(WAIT_SECONDS)

    def erase():
        with transaction.atomic():
            return profiles_erase(profile_ids=[profile.pk])

    eraser = _Thread(erase)
    eraser.start()
    _wait_until_someone_waits_for_a_lock()
    commit.set()

    ingester.outcome()
    result = eraser.outcome()
    assert result.deleted == 1
    assert result.count("profiles.event") == 1
    assert not Profile.objects.exists()
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_identifies_of_a_new_id_make_one_profile():
    start = threading.Barrier(8)

    def identify_at_once(n):
        def run():
            start.wait(WAIT_SECONDS)
            return ingestion.profile_identify(call=identify("new", **{f"k{n}": n}))

        return run

    threads = [_Thread(identify_at_once(n)) for n in range(8)]
    for thread in threads:
        thread.start()
    refs = [thread.outcome() for thread in threads]
    assert sum(ref.created for ref in refs) == 1
    assert len({ref.pk for ref in refs}) == 1
    assert Profile.objects.get().properties == {f"k{n}": n for n in range(8)}


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_by_email_make_one_profile():
    start = threading.Barrier(6)

    def run():
        start.wait(WAIT_SECONDS)
        return ingestion.event_track(call=track(email="ada@example.com"))

    threads = [_Thread(run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.outcome()
    assert Profile.objects.count() == 1
    assert Event.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_a_lock_held_too_long_gets_a_503_to_retry_and_writes_nothing(monkeypatch):
    monkeypatch.setattr(ingestion, "LOCK_TIMEOUT", "200ms")
    _, key = api_key_create(name="k", scope="full")
    profile = ProfileFactory(user_id="u1")
    locked, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            list(Profile.objects.select_for_update().filter(pk=profile.pk))
            locked.set()
            assert release.wait(WAIT_SECONDS)

    holder = _Thread(hold)
    holder.start()
    assert locked.wait(WAIT_SECONDS)
    body = {"identity": {"id": "u1"}, "event_name": "x", "tracking_api_key": key}
    try:
        response = Client().post("/api/v2/events/track", body, content_type="application/json")
    finally:
        release.set()
        holder.outcome()
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "busy"
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_delete_racing_a_reidentify_never_erases_the_profile_under_its_new_id():
    """The delete names u1; u1 becomes u2 while the delete waits. Erasing the
    primary key looked up before the wait would erase u2, whom nobody asked
    to delete; the delete finds no u1 instead."""
    profile = ProfileFactory(user_id="u1")
    renamed, commit = threading.Event(), threading.Event()

    def reidentify():
        with transaction.atomic():
            ingestion.profile_reidentify(user_id="u1", new_user_id="u2")
            renamed.set()
            assert commit.wait(WAIT_SECONDS)

    renamer = _Thread(reidentify)
    renamer.start()
    assert renamed.wait(WAIT_SECONDS)
    deleter = _Thread(lambda: ingestion.profile_delete(user_id="u1"))
    deleter.start()
    _wait_until_someone_waits_for_a_lock()
    commit.set()

    renamer.outcome()
    with pytest.raises(ingestion.ProfileNotFound):
        deleter.outcome()
    assert Profile.objects.get(user_id="u2").pk == profile.pk
    ingestion.profile_identify(call=identify("u1"))
    assert Profile.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_event_by_email_for_a_profile_being_erased_lands_on_a_new_profile():
    """The lookup by email takes FOR KEY SHARE too: without it the event is
    inserted for the old primary key and fails its foreign key at commit."""
    old = ProfileFactory(user_id=None, email="ada@example.com")
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(old.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)

    ingester = _Thread(lambda: ingestion.event_track(call=track(email="ada@example.com")))
    ingester.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    assert eraser.outcome().deleted == 1
    event = ingester.outcome()
    new = Profile.objects.get(email="ada@example.com")
    assert new.pk != old.pk
    assert event.profile_id == new.pk
    assert list(new.events.values_list("name", flat=True)) == ["signed_in"]
