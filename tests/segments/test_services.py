import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from profiles.models import Event, Profile
from segments import services
from segments.models import DeletionJob, Segment, SegmentMembership
from segments.rules import RulesError
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


def members(segment):
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list("profile_id", flat=True)
    )


def trial(**kwargs):
    return ProfileFactory(properties={"plan": "trial"}, **kwargs)


def starter(**kwargs):
    return ProfileFactory(properties={"plan": "starter"}, **kwargs)


@pytest.mark.django_db
class TestRefresh:
    def test_it_adds_joiners_and_removes_leavers(self):
        segment = SegmentFactory(rules=TRIALS, member_count=None, last_refreshed_at=None)
        stayer, joiner, leaver, outsider = trial(), trial(), starter(), starter()
        kept = SegmentMembershipFactory(segment=segment, profile=stayer)
        SegmentMembershipFactory(segment=segment, profile=leaver)

        count = services.segment_refresh(segment=segment)

        assert count == 2
        assert members(segment) == {stayer.pk, joiner.pk}
        assert outsider.pk not in members(segment)
        segment.refresh_from_db()
        assert segment.member_count == 2
        assert timezone.now() - segment.last_refreshed_at < timedelta(minutes=1)
        # People who stay keep the date they joined.
        assert SegmentMembership.objects.get(pk=kept.pk).joined_at == kept.joined_at

    def test_it_follows_changes_in_the_data(self):
        segment = SegmentFactory(rules=TRIALS)
        ada = trial()
        assert services.segment_refresh(segment=segment) == 1
        ada.properties = {"plan": "growth"}
        ada.save()
        bea = trial()
        assert services.segment_refresh(segment=segment) == 1
        assert members(segment) == {bea.pk}

    def test_it_leaves_other_segments_alone(self):
        segment, other = SegmentFactory(rules=TRIALS), SegmentFactory()
        somebody = starter()
        SegmentMembershipFactory(segment=other, profile=somebody)
        services.segment_refresh(segment=segment)
        assert members(other) == {somebody.pk}

    def test_it_uses_the_saved_rules_not_a_stale_copy(self):
        segment = SegmentFactory(rules=TRIALS)
        stale = Segment.objects.get(pk=segment.pk)
        Segment.objects.filter(pk=segment.pk).update(
            rules={"match": "all", "conditions": [{"type": "event", "operator": "not_done"}]}
        )
        lazy = starter()
        EventFactory(profile=trial())
        services.segment_refresh(segment=stale)
        assert members(segment) == {lazy.pk}

    def test_within_days_counts_from_the_refresh(self):
        segment = SegmentFactory(
            rules={
                "match": "all",
                "conditions": [{"type": "event", "operator": "not_done", "within_days": 90}],
            }
        )
        recent, old = ProfileFactory(), ProfileFactory()
        EventFactory(profile=recent, occurred_at=timezone.now() - timedelta(days=89))
        EventFactory(profile=old, occurred_at=timezone.now() - timedelta(days=91))
        services.segment_refresh(segment=segment)
        assert members(segment) == {old.pk}

    def test_it_serves_the_pending_request(self):
        segment = SegmentFactory(rules=TRIALS)
        services.segment_request_refresh(segment=segment)
        assert Segment.objects.get(pk=segment.pk).is_refreshing
        services.segment_refresh(segment=segment)
        segment.refresh_from_db()
        assert not segment.is_refreshing
        assert segment.refresh_requested_at is None

    def test_invalid_rules_are_recorded_and_the_membership_kept(self):
        segment = SegmentFactory(rules={"match": "all", "conditions": []})
        somebody = trial()
        SegmentMembershipFactory(segment=segment, profile=somebody)
        services.segment_request_refresh(segment=segment)
        with pytest.raises(RulesError):
            services.segment_refresh(segment=segment)
        segment.refresh_from_db()
        assert "not valid" in segment.refresh_error
        assert not segment.is_refreshing
        assert members(segment) == {somebody.pk}

    def test_a_refresh_that_runs_too_long_is_stopped_and_recorded(self):
        segment = SegmentFactory(rules=TRIALS)
        trial()
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION pg_temp.slow() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER slow BEFORE INSERT ON segments_segmentmembership "
                "FOR EACH ROW EXECUTE FUNCTION pg_temp.slow()"
            )
        with pytest.raises(DatabaseError):
            services.segment_refresh(segment=segment, statement_timeout=0.1)
        segment.refresh_from_db()
        assert "longer than" in segment.refresh_error
        assert members(segment) == set()


@pytest.mark.django_db
class TestRequestRefresh:
    def test_it_marks_the_segment_and_enqueues_the_task_on_commit(
        self, django_capture_on_commit_callbacks, monkeypatch
    ):
        enqueued = []
        monkeypatch.setattr(services, "async_task", lambda *args: enqueued.append(args))
        segment = SegmentFactory(refresh_error="old failure")
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.segment_request_refresh(segment=segment)
        assert enqueued == []
        segment.refresh_from_db()
        assert segment.is_refreshing and segment.refresh_error == ""
        for callback in callbacks:
            callback()
        assert enqueued == [("segments.tasks.refresh_segment", segment.pk)]

    def test_the_task_refreshes_the_segment(self, monkeypatch, django_capture_on_commit_callbacks):
        monkeypatch.setattr("django_q.conf.Conf.SYNC", True)
        segment = SegmentFactory(rules=TRIALS, member_count=None)
        ada = trial()
        with django_capture_on_commit_callbacks(execute=True):
            services.segment_request_refresh(segment=segment)
        segment.refresh_from_db()
        assert segment.member_count == 1 and not segment.is_refreshing
        assert members(segment) == {ada.pk}


@pytest.mark.django_db
class TestDefinitions:
    def test_creating_a_segment_requests_its_first_count(self, alice, monkeypatch):
        monkeypatch.setattr(services, "async_task", lambda *args: None)
        segment = services.segment_create(name="Trials", description="", rules=TRIALS, user=alice)
        assert segment.created_by == alice
        assert Segment.objects.get(pk=segment.pk).is_refreshing

    def test_new_rules_request_a_refresh_and_a_new_name_does_not(self, monkeypatch):
        monkeypatch.setattr(services, "async_task", lambda *args: None)
        segment = SegmentFactory(rules=TRIALS)
        services.segment_update(segment=segment, name="Renamed", description="", rules=TRIALS)
        assert not Segment.objects.get(pk=segment.pk).is_refreshing
        other_rules = {"match": "any", "conditions": TRIALS["conditions"]}
        services.segment_update(segment=segment, name="Renamed", description="", rules=other_rules)
        segment = Segment.objects.get(pk=segment.pk)
        assert segment.name == "Renamed" and segment.rules == other_rules
        assert segment.is_refreshing

    def test_deleting_a_segment_keeps_its_profiles(self):
        segment = SegmentFactory()
        membership = SegmentMembershipFactory(segment=segment)
        services.segment_delete(segment=segment)
        assert not Segment.objects.filter(pk=segment.pk).exists()
        assert not SegmentMembership.objects.filter(pk=membership.pk).exists()
        assert Profile.objects.filter(pk=membership.profile_id).exists()

    def test_a_segment_whose_profiles_are_being_deleted_cannot_be_deleted(self):
        segment = SegmentFactory()
        DeletionJob.objects.create(
            segment=segment, segment_name=segment.name, status=DeletionJob.Status.RUNNING
        )
        with pytest.raises(services.SegmentBusy, match="being deleted"):
            services.segment_delete(segment=segment)
        assert Segment.objects.filter(pk=segment.pk).exists()


# Concurrency: a second, real connection in another thread ------------------


@contextmanager
def refresh_held_open(segment):
    """Run a refresh in another thread and keep its transaction (and every
    lock it took) open until the block ends."""
    done_refreshing, release = threading.Event(), threading.Event()
    errors = []

    def run():
        try:
            with transaction.atomic():
                services.segment_refresh(segment=Segment.objects.get(pk=segment.pk))
                done_refreshing.set()
                release.wait(timeout=30)
        except Exception as error:  # surfaced in the main thread
            errors.append(error)
            done_refreshing.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert done_refreshing.wait(timeout=30)
    try:
        assert not errors, errors
        yield
    finally:
        release.set()
        thread.join(timeout=30)
    assert not errors, errors


@contextmanager
def profile_locked_for_deletion(profile):
    """Hold the row lock a deletion takes on a profile, in another thread."""
    locked, release = threading.Event(), threading.Event()

    def run():
        try:
            with transaction.atomic():
                list(Profile.objects.select_for_update().filter(pk=profile.pk))
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert locked.wait(timeout=30)
    try:
        yield
    finally:
        release.set()
        thread.join(timeout=30)


def lock_timeout(ms):
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{ms}ms"])


@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def test_a_second_refresh_of_a_segment_is_refused_while_one_runs(self):
        segment = SegmentFactory(rules=TRIALS)
        trial()
        with refresh_held_open(segment):
            with pytest.raises(services.SegmentRefreshInProgress, match="already being refreshed"):
                services.segment_refresh(segment=segment)
            # Another segment refreshes meanwhile.
            assert services.segment_refresh(segment=SegmentFactory(rules=TRIALS)) == 1
        assert services.segment_refresh(segment=segment) == 1

    def test_a_request_that_arrives_mid_refresh_is_served_by_another_round(self, monkeypatch):
        segment = SegmentFactory(rules=TRIALS)
        services.segment_request_refresh(segment=segment)
        in_statement, go = threading.Event(), threading.Event()
        rewrite, rounds = services._rewrite_membership, []

        def paused_rewrite(*args):
            rounds.append(args)
            if len(rounds) == 1:
                in_statement.set()
                go.wait(timeout=30)
            return rewrite(*args)

        monkeypatch.setattr(services, "_rewrite_membership", paused_rewrite)

        def task():
            try:
                services.segment_refresh_requested(segment_id=segment.pk)
            finally:
                connections.close_all()

        worker = threading.Thread(target=task)
        worker.start()
        assert in_statement.wait(timeout=30)
        ada = trial()  # after the first round read the data
        services.segment_request_refresh(segment=segment)
        services.segment_refresh_requested(segment_id=segment.pk)  # refused: returns at once
        assert len(rounds) == 1
        go.set()
        worker.join(timeout=30)

        assert len(rounds) == 2
        segment.refresh_from_db()
        assert not segment.is_refreshing
        assert members(segment) == {ada.pk} and segment.member_count == 1

    def test_a_running_refresh_does_not_block_event_ingestion(self):
        segment = SegmentFactory(rules=TRIALS)
        member, newcomer = trial(), starter()
        with refresh_held_open(segment):
            assert members(segment) == set()  # not committed yet
            with transaction.atomic():
                lock_timeout(500)
                EventFactory(profile=member, name="signed_in")
                Profile.objects.filter(pk=member.pk).update(properties={"plan": "growth"})
                EventFactory(profile=ProfileFactory(), name="signed_up")
                newcomer.properties = {"plan": "trial"}
                newcomer.save()
        assert Event.objects.filter(profile=member, name="signed_in").exists()
        assert members(segment) == {member.pk}

    def test_a_refresh_does_not_wait_for_a_profile_being_deleted(self):
        segment = SegmentFactory(rules=TRIALS)
        doomed, other = trial(), trial()
        with profile_locked_for_deletion(doomed), transaction.atomic():
            lock_timeout(500)
            assert services.segment_refresh(segment=segment) == 1
        assert members(segment) == {other.pk}
        assert services.segment_refresh(segment=segment) == 2

    def test_deleting_a_segment_is_refused_while_it_refreshes(self, monkeypatch):
        segment = SegmentFactory(rules=TRIALS)
        in_statement, go = threading.Event(), threading.Event()
        rewrite = services._rewrite_membership

        def paused_rewrite(*args):
            in_statement.set()
            go.wait(timeout=30)
            return rewrite(*args)

        monkeypatch.setattr(services, "_rewrite_membership", paused_rewrite)

        def task():
            try:
                services.segment_refresh(segment=segment)
            finally:
                connections.close_all()

        worker = threading.Thread(target=task)
        worker.start()
        assert in_statement.wait(timeout=30)
        try:
            with pytest.raises(services.SegmentBusy, match="being refreshed"):
                services.segment_delete(segment=segment)
        finally:
            go.set()
            worker.join(timeout=30)
        services.segment_delete(segment=segment)
        assert not Segment.objects.filter(pk=segment.pk).exists()
