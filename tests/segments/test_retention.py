"""Retention schedules, in-process: the slots, the dispatcher's claims, a
run's checks (brake, rules, owner, a running deletion) and the Editors'
actions. The runs through a real qcluster are in test_retention_worker.py."""

import datetime
import importlib
import threading

import pytest
from django.apps import apps
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from profiles.models import Profile
from segments import services as segment_services
from segments.deletion import services as deletion
from segments.models import DeletionJob, RetentionSchedule
from segments.retention import services as retention
from segments.retention.notices import retention_brake_emails_send
from segments.retention.timing import next_slot
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}
# Sunday 29 November 2026, 10:00 UTC (settings.TIME_ZONE is UTC).
NOW = datetime.datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def at(day, hour, minute=0):
    return datetime.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def trials():
    """A segment of trial users, refreshed: 3 members, 2 people who stay."""
    segment = SegmentFactory(name="Old trials", rules=TRIALS)
    for plan in ("trial", "trial", "trial", "paid", "paid"):
        ProfileFactory(properties={"plan": plan})
    segment_services.segment_refresh(segment=segment)
    return segment


def make_schedule(segment, user, *, now=NOW, **kwargs):
    options = {
        "typed_name": segment.name,
        "frequency": "daily",
        "weekday": None,
        "time_of_day": datetime.time(3, 0),
        "max_profiles": 100,
    }
    options.update(kwargs)
    return retention.retention_create(segment=segment, user=user, now=now, **options)


# --- Slots ---------------------------------------------------------------------------


def test_a_daily_slot_is_today_if_the_time_is_still_ahead_else_tomorrow():
    kwargs = {"frequency": "daily", "weekday": None}
    assert next_slot(**kwargs, time_of_day=datetime.time(11, 30), after=NOW) == at(29, 11, 30)
    assert next_slot(**kwargs, time_of_day=datetime.time(9, 0), after=NOW) == at(30, 9)
    # Strictly after: a slot at exactly now is the one being run.
    assert next_slot(**kwargs, time_of_day=datetime.time(10, 0), after=NOW) == at(30, 10)


def test_a_weekly_slot_falls_on_its_weekday():
    monday = next_slot(frequency="weekly", weekday=0, time_of_day=datetime.time(3), after=NOW)
    assert monday == at(30, 3)
    sunday = next_slot(frequency="weekly", weekday=6, time_of_day=datetime.time(3), after=NOW)
    assert sunday == datetime.datetime(2026, 12, 6, 3, tzinfo=UTC)


# --- Creating, pausing, resuming, deleting --------------------------------------


def test_an_editor_creates_a_schedule_with_its_first_slot(trials, alice):
    schedule = make_schedule(trials, alice)
    assert schedule.status == "active"
    assert schedule.owner == alice and schedule.owner_username == "alice"
    assert schedule.next_run_at == at(30, 3)
    assert schedule.rules_digest == retention.rules_digest(TRIALS)
    assert schedule.describe_when == "Every day at 03:00"


def test_the_schedule_keeps_a_digest_of_the_rules_never_the_rules(trials, alice):
    schedule = make_schedule(trials, alice)
    stored = RetentionSchedule.objects.filter(pk=schedule.pk).values().get()
    assert "trial" not in str(stored)


def test_a_wrong_name_creates_no_schedule(trials, alice):
    with pytest.raises(retention.RetentionRefused):
        make_schedule(trials, alice, typed_name="old trials")
    assert not RetentionSchedule.objects.exists()


def test_a_viewer_cannot_create_a_schedule(trials, bob):
    with pytest.raises(PermissionDenied):
        make_schedule(trials, bob)
    assert not RetentionSchedule.objects.exists()


def test_a_segment_has_one_schedule_at_most(trials, alice):
    make_schedule(trials, alice)
    with pytest.raises(retention.RetentionRefused):
        make_schedule(trials, alice)
    assert RetentionSchedule.objects.count() == 1


def test_pause_and_resume_from_the_next_slot_after_now(trials, alice):
    schedule = make_schedule(trials, alice)
    retention.retention_pause(schedule=schedule, user=alice, now=NOW)
    schedule.refresh_from_db()
    assert schedule.is_paused and "Paused by alice" in schedule.pause_reason
    later = at(30, 12)
    retention.retention_resume(schedule=schedule, user=alice, typed_name=trials.name, now=later)
    schedule.refresh_from_db()
    assert schedule.status == "active" and schedule.pause_reason == ""
    assert schedule.next_run_at == datetime.datetime(2026, 12, 1, 3, tzinfo=UTC)


def test_whoever_resumes_becomes_the_owner(trials, alice, admin_user):
    schedule = make_schedule(trials, alice)
    retention.retention_pause(schedule=schedule, user=alice, now=NOW)
    retention.retention_resume(schedule=schedule, user=admin_user, typed_name=trials.name, now=NOW)
    schedule.refresh_from_db()
    assert schedule.owner == admin_user and schedule.owner_username == "root"


def test_a_viewer_cannot_pause_resume_or_delete(trials, alice, bob):
    schedule = make_schedule(trials, alice)
    with pytest.raises(PermissionDenied):
        retention.retention_pause(schedule=schedule, user=bob)
    with pytest.raises(PermissionDenied):
        retention.retention_resume(schedule=schedule, user=bob, typed_name=trials.name)
    with pytest.raises(PermissionDenied):
        retention.retention_delete(schedule=schedule, user=bob)
    schedule.refresh_from_db()
    assert schedule.status == "active"


# --- A rule edit -------------------------------------------------------------------------


def test_a_rule_edit_pauses_the_schedule_saying_when_and_by_whom(trials, alice):
    schedule = make_schedule(trials, alice)
    paid = {**TRIALS, "conditions": [{**TRIALS["conditions"][0], "value": "paid"}]}
    segment_services.segment_update(
        segment=trials, name=trials.name, description="", rules=paid, user=alice
    )
    schedule.refresh_from_db()
    assert schedule.is_paused
    assert "The rules changed on" in schedule.pause_reason
    assert "by alice; review who is in the segment and resume." in schedule.pause_reason


def test_renaming_or_describing_does_not_pause(trials, alice):
    schedule = make_schedule(trials, alice)
    segment_services.segment_update(
        segment=trials, name="Old trial users", description="new", rules=TRIALS, user=alice
    )
    schedule.refresh_from_db()
    assert schedule.status == "active"


def test_rules_changed_behind_the_dashboards_back_pause_at_the_run(trials, alice):
    schedule = make_schedule(trials, alice)
    type(trials).objects.filter(pk=trials.pk).update(rules={**TRIALS, "match": "any"})
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "paused"
    schedule.refresh_from_db()
    assert "rules changed since this schedule was confirmed" in schedule.pause_reason
    assert not DeletionJob.objects.exists()


# --- The dispatcher ------------------------------------------------------------------


def queued_runs():
    return OrmQ.objects.count()


def test_nothing_is_dispatched_before_the_slot(trials, alice):
    make_schedule(trials, alice)
    assert retention.retention_dispatch(now=at(30, 2, 59)) == []
    assert queued_runs() == 0


def test_a_due_slot_is_claimed_once_and_enqueued(trials, alice):
    schedule = make_schedule(trials, alice)
    claimed = retention.retention_dispatch(now=at(30, 3, 0))
    assert claimed == [(schedule.pk, at(30, 3))]
    assert queued_runs() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime.datetime(2026, 12, 1, 3, tzinfo=UTC)
    assert retention.retention_dispatch(now=at(30, 3, 0)) == []
    assert queued_runs() == 1


def test_a_window_missed_for_days_runs_once_and_goes_on_from_now(trials, alice):
    schedule = make_schedule(trials, alice)  # first slot: 30 Nov 03:00
    back = datetime.datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # workers down 4.5 days
    claimed = retention.retention_dispatch(now=back)
    assert claimed == [(schedule.pk, at(30, 3))]
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime.datetime(2026, 12, 5, 3, tzinfo=UTC)
    assert retention.retention_dispatch(now=back) == []
    assert queued_runs() == 1


def test_a_paused_schedule_is_not_dispatched(trials, alice):
    schedule = make_schedule(trials, alice)
    retention.retention_pause(schedule=schedule, user=alice)
    assert retention.retention_dispatch(now=at(30, 3)) == []


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_claim_each_slot_once(alice):
    segment = SegmentFactory(name="Old trials", rules=TRIALS)
    schedules = [make_schedule(segment, alice)]
    for n in range(5):
        other = SegmentFactory(name=f"Old trials {n}", rules=TRIALS)
        schedules.append(make_schedule(other, alice))
    barrier = threading.Barrier(4)
    claims, errors = [], []

    def dispatch():
        try:
            barrier.wait(5)
            claims.extend(retention.retention_dispatch(now=at(30, 3)))
        except Exception as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)
        finally:
            connections["default"].close()

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(claims) == sorted((s.pk, at(30, 3)) for s in schedules)
    assert queued_runs() == len(schedules)


# --- A run ------------------------------------------------------------------------------


def test_a_run_refreshes_and_starts_an_ordinary_deletion_in_the_owners_name(trials, alice):
    schedule = make_schedule(trials, alice)
    newcomer = ProfileFactory(properties={"plan": "trial"})
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3), now=at(30, 3)) == (
        "started"
    )
    job = DeletionJob.objects.get()
    assert job.total == 4  # the newcomer joined at the refresh
    assert job.snapshot.filter(profile_id=newcomer.pk).exists()
    assert job.started_by_schedule and job.created_by == alice
    assert job.created_by_username == "alice"
    schedule.refresh_from_db()
    assert schedule.last_job == job and schedule.last_run_at == at(30, 3)
    assert f"started deletion #{job.pk} of 4 profiles" in schedule.last_run_note


def test_a_second_delivery_of_one_slot_does_nothing(trials, alice):
    schedule = make_schedule(trials, alice)
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "started"
    job = DeletionJob.objects.get()
    while deletion.deletion_run(job_id=job.pk, slice_seconds=60) != "completed":
        pass
    latecomer = ProfileFactory(properties={"plan": "trial"})
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "duplicate"
    assert DeletionJob.objects.count() == 1
    assert Profile.objects.filter(pk=latecomer.pk).exists()
    # The next slot is a run of its own.
    later = datetime.datetime(2026, 12, 1, 3, tzinfo=UTC)
    assert retention.retention_run(schedule_id=schedule.pk, slot=later) == "started"


def test_a_run_killed_before_its_job_was_created_runs_again_on_redelivery(
    trials, alice, monkeypatch
):
    schedule = make_schedule(trials, alice)

    def killed(**kwargs):
        raise SystemExit("the worker was killed")

    monkeypatch.setattr(deletion, "deletion_start", killed)
    with pytest.raises(SystemExit):
        retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3))
    schedule.refresh_from_db()
    assert schedule.last_slot is None
    monkeypatch.undo()
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "started"
    assert DeletionJob.objects.count() == 1


def test_the_job_and_the_slots_record_commit_together(trials, alice, monkeypatch):
    schedule = make_schedule(trials, alice)
    settle = retention._settle

    def dies_after_the_job(schedule, slot, **kwargs):
        if kwargs.get("job") is not None:
            raise SystemExit("the worker was killed")
        settle(schedule, slot, **kwargs)

    monkeypatch.setattr(retention, "_settle", dies_after_the_job)
    with pytest.raises(SystemExit):
        retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3))
    assert not DeletionJob.objects.exists()
    schedule.refresh_from_db()
    assert schedule.last_slot is None


def test_a_delivery_while_another_runs_the_schedule_exits(trials, alice):
    schedule = make_schedule(trials, alice)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock(%s, %s)", [retention.RUN_LOCK_NAMESPACE, schedule.pk]
            )
        assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "running"
    finally:
        other.close()
    schedule.refresh_from_db()
    assert schedule.last_slot is None and not DeletionJob.objects.exists()


def edit_landing_at_the_start(monkeypatch, edit):
    """Run ``edit`` just before the run starts its deletion: after its
    refresh and its checks (an Editor's request landing at that moment)."""
    token = retention.segment_membership_token

    def token_then_edit(segment):
        edit(segment)
        return token(segment)

    monkeypatch.setattr(retention, "segment_membership_token", token_then_edit)


def test_rules_changed_just_before_the_start_roll_the_deletion_back(trials, alice, monkeypatch):
    schedule = make_schedule(trials, alice)
    everyone = {"match": "any", "conditions": [{"type": "subscription", "status": "subscribed"}]}
    edit_landing_at_the_start(
        monkeypatch,
        lambda segment: type(segment).objects.filter(pk=segment.pk).update(rules=everyone),
    )
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "paused"
    assert not DeletionJob.objects.exists()
    schedule.refresh_from_db()
    assert "rules changed during the run" in schedule.pause_reason
    assert schedule.last_slot == at(30, 3)


def test_a_pause_just_before_the_start_rolls_the_deletion_back(trials, alice, monkeypatch):
    schedule = make_schedule(trials, alice)
    edit_landing_at_the_start(
        monkeypatch,
        lambda segment: RetentionSchedule.objects.filter(segment=segment).update(status="paused"),
    )
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "paused"
    assert not DeletionJob.objects.exists()


def test_a_rule_edit_and_a_resume_during_the_refresh_start_no_deletion(trials, alice, monkeypatch):
    """The refresh wrote the old rules' members; an Editor then edited the
    rules (pausing the schedule) and resumed it, confirming the new rules,
    before the run reached the start: the old rules' members must not be
    deleted in the name of the new ones."""
    schedule = make_schedule(trials, alice)
    paid = {
        "match": "all",
        "conditions": [
            {"type": "property", "field": "plan", "operator": "equals", "value": "paid"}
        ],
    }
    real_refresh = retention.segment_refresh

    def refresh_then_edit_and_resume(*, segment, **kwargs):
        count = real_refresh(segment=segment, **kwargs)
        edited = type(segment).objects.get(pk=segment.pk)
        segment_services.segment_update(
            segment=edited, name=edited.name, description="", rules=paid, user=alice
        )
        retention.retention_resume(schedule=schedule, user=alice, typed_name=edited.name)
        return count

    monkeypatch.setattr(retention, "segment_refresh", refresh_then_edit_and_resume)
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "changed"
    assert not DeletionJob.objects.exists()
    assert Profile.objects.count() == 5
    schedule.refresh_from_db()
    assert schedule.status == "active" and schedule.last_slot == at(30, 3)
    assert "paused and resumed while it ran, so nobody was deleted" in schedule.last_run_note


def test_the_brake_pauses_without_deleting_and_emails_the_owner(
    trials, alice, django_capture_on_commit_callbacks
):
    schedule = make_schedule(trials, alice, max_profiles=2)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3))
    assert outcome == "braked"
    assert not DeletionJob.objects.exists()
    schedule.refresh_from_db()
    assert schedule.is_paused and schedule.brake_found == 3
    assert "found 3 profiles, more than the 2 a run may delete" in schedule.pause_reason
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert "3 profiles found, more than the 2 allowed" in message.subject
    # Counts only: no member's address in the email.
    assert "person" not in message.body and "@example.com" not in message.body
    assert retention_brake_emails_send() == 0  # sent once


def test_a_run_waits_while_a_deletion_of_the_segment_is_active(trials, alice):
    schedule = make_schedule(trials, alice)
    job = deletion.deletion_start(
        segment=trials, user=alice, typed_name=trials.name, expected_count=3
    ).job
    refreshed = type(trials).objects.get(pk=trials.pk).last_refreshed_at
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "busy"
    schedule.refresh_from_db()
    assert f"skipped: deletion #{job.pk} of this segment was still running" in (
        schedule.last_run_note
    )
    # Not even refreshed: the membership is left as the running deletion found it.
    assert type(trials).objects.get(pk=trials.pk).last_refreshed_at == refreshed
    assert schedule.status == "active"
    assert DeletionJob.objects.count() == 1


def test_an_owner_who_lost_access_pauses_the_schedule(trials, alice):
    schedule = make_schedule(trials, alice)
    alice.groups.clear()
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "paused"
    schedule.refresh_from_db()
    assert "alice confirmed this schedule and can no longer delete profiles" in (
        schedule.pause_reason
    )
    assert not DeletionJob.objects.exists()


def test_a_run_that_finds_nobody_says_so(alice):
    segment = SegmentFactory(name="Nobody", rules=TRIALS)
    schedule = make_schedule(segment, alice)
    assert retention.retention_run(schedule_id=schedule.pk, slot=at(30, 3)) == "empty"
    schedule.refresh_from_db()
    assert "found nobody to delete" in schedule.last_run_note


def test_deleting_the_segment_deletes_its_schedule(trials, alice):
    make_schedule(trials, alice)
    segment_services.segment_delete(segment=trials)
    assert not RetentionSchedule.objects.exists()


DISPATCHER_MIGRATION = importlib.import_module("segments.migrations.0013_retention_schedule")


def test_the_migrations_schedule_runs_the_dispatcher_every_minute(trials, alice):
    """Run what the migration's Schedule row names, as django-q2 would, then
    the task it enqueued: a name that points nowhere must fail here."""
    DISPATCHER_MIGRATION.schedule_dispatcher(apps, None)  # a transactional test's flush removes it
    schedule = make_schedule(trials, alice, now=timezone.now() - datetime.timedelta(days=2))
    (row,) = Schedule.objects.filter(name=DISPATCHER_MIGRATION.DISPATCHER)
    assert (row.schedule_type, row.minutes, row.repeats) == (Schedule.MINUTES, 1, -1)
    module, name = row.func.rsplit(".", 1)
    claimed = getattr(importlib.import_module(module), name)()
    assert claimed == [(schedule.pk, schedule.next_run_at)]
    (queued,) = OrmQ.objects.all()
    task = queued.task
    module, name = task["func"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)(*task["args"]) == "started"
    assert DeletionJob.objects.get().started_by_schedule
