import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

from messaging.models import Message, MessageActivity
from profiles.erasure import DELETE, KEEP, erasure_plan, profile_erase, profiles_erase
from profiles.models import Event, Profile, SubscriptionPreference
from segments.models import SegmentMembership
from tests.messaging.factories import MessageActivityFactory
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory
from tests.segments.factories import SegmentMembershipFactory

pytestmark = pytest.mark.django_db


def test_every_table_that_references_a_profile_has_a_step():
    """A table added next year that points at Profile is erased too, or the
    plan refuses to build: it can never be forgotten."""
    planned = {step.label for step in erasure_plan()}
    referencing = {rel.related_model._meta.label_lower for rel in Profile._meta.related_objects}
    assert referencing <= planned
    assert referencing >= {
        "profiles.event",
        "profiles.subscriptionpreference",
        "segments.segmentmembership",
        "messaging.message",
        "messaging.messageactivity",
    }


def test_personal_data_is_kept_out_of_reports_and_the_rest_is_deleted():
    actions = {step.label: step.action for step in erasure_plan()}
    assert actions["messaging.message"] == KEEP
    assert actions["messaging.messageactivity"] == KEEP
    assert actions["profiles.event"] == DELETE
    # Anonymizing runs before deleting, so no FK points at a deleted row at commit.
    labels = [step.label for step in erasure_plan()]
    assert labels.index("messaging.message") < labels.index("profiles.event")


def test_a_relation_erasure_cannot_handle_stops_the_plan(monkeypatch):
    relation = Profile._meta.get_field("events")
    monkeypatch.setattr(relation, "on_delete", models.PROTECT)
    erasure_plan.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured, match="PROTECT"):
            erasure_plan()
    finally:
        monkeypatch.undo()
        erasure_plan.cache_clear()


def test_erasing_a_profile_deletes_its_data_and_anonymizes_its_activity():
    person, bystander = ProfileFactory(), ProfileFactory()
    for profile in (person, bystander):
        EventFactory(profile=profile)
        SubscriptionPreferenceFactory(profile=profile)
        SegmentMembershipFactory(profile=profile)
        MessageActivityFactory(message__profile=profile)

    result = profile_erase(profile=person)

    assert (result.requested, result.deleted, result.skipped) == (1, 1, 0)
    assert result.count("profiles.event") == 1
    assert not Profile.objects.filter(pk=person.pk).exists()
    for model in (Event, SubscriptionPreference, SegmentMembership):
        assert model.objects.filter(profile_id=person.pk).count() == 0
        assert model.objects.filter(profile_id=bystander.pk).count() == 1
    message = Message.objects.get(profile=None)
    assert message.recipient_email == ""
    activity = MessageActivity.objects.get(message=message)
    assert activity.profile_id is None and activity.ip_address is None and activity.user_agent == ""
    assert MessageActivity.objects.get(profile=bystander).ip_address == "198.51.100.7"


def test_missing_ids_are_skipped():
    person = ProfileFactory()
    with transaction.atomic():
        result = profiles_erase(profile_ids=[person.pk, 987654321, person.pk])
    assert (result.requested, result.deleted, result.skipped) == (2, 1, 1)


def test_it_refuses_to_run_outside_a_transaction(transactional_db):
    with pytest.raises(RuntimeError, match="atomic"):
        profiles_erase(profile_ids=[1])
