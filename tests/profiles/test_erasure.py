import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from messaging.models import Message, MessageActivity
from profiles.erasure import (
    DELETE,
    KEEP,
    SCRUB,
    erased_repr,
    erasure_plan,
    kept_rows,
    profile_erase,
    profiles_erase,
    url_kept_sql,
)
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


def test_each_step_runs_while_the_links_it_follows_are_still_there():
    """The admin log is rewritten first, because it finds the rows through
    the profile links later steps clear; activity is anonymized before its
    messages are unlinked, because it is found through them."""
    labels = [step.label for step in erasure_plan()]
    last_scrub = max(i for i, label in enumerate(labels) if label == "admin.logentry")
    assert last_scrub < min(i for i, label in enumerate(labels) if label != "admin.logentry")
    assert labels.index("messaging.messageactivity") < labels.index("messaging.message")


def test_erasure_checks_each_foreign_key_as_it_goes():
    """Foreign keys are declared deferred (checked at commit), where any order
    of the steps would pass. Erasure checks them per statement, so the
    erasure tests prove its order works without deferral: nothing points at
    a profile when it is deleted."""
    person = ProfileFactory()
    EventFactory(profile=person)
    MessageActivityFactory(message__profile=person)
    with transaction.atomic():
        assert profiles_erase(profile_ids=[person.pk]).deleted == 1
        with pytest.raises(IntegrityError, match="profiles_event"), transaction.atomic():
            Event.objects.create(profile_id=person.pk, name="late", occurred_at=timezone.now())


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


# --- copies of personal data beyond the profile's own rows ----------------------------


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        (
            "https://shop.example.com/reset?email=ada@example.com&token=s3cret",
            "https://shop.example.com/reset",
        ),
        ("https://shop.example.com/welcome#token=s3cret", "https://shop.example.com/welcome"),
        ("https://ada:pw@shop.example.com:8443/a/b?x=1", "https://shop.example.com:8443/a/b"),
        (
            "https://shop.example.com/u/ada@example.com/edit",
            "https://shop.example.com/u/[erased]/edit",
        ),
        ("https://shop.example.com/u/ADA%40EXAMPLE.COM", "https://shop.example.com/u/[erased]"),
        ("mailto:ada@example.com?subject=Hi", "mailto:"),
        ("https://shop.example.com", "https://shop.example.com"),
        ("", ""),
    ],
)
def test_a_kept_url_is_cut_down_to_scheme_host_and_path(url, kept):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {url_kept_sql('%(url)s')}", {"url": url})
        assert cursor.fetchone()[0] == kept
        cursor.execute(f"SELECT {url_kept_sql('%(url)s')}", {"url": kept})
        assert cursor.fetchone()[0] == kept  # applying it again changes nothing


def test_a_click_keeps_no_query_string_after_erasure_and_anothers_click_is_untouched():
    person, bystander = ProfileFactory(), ProfileFactory()
    token_url = "https://shop.example.com/reset?email=ada@example.com&token=s3cret#top"
    click = MessageActivityFactory(
        message__profile=person, kind=MessageActivity.CLICK, url=token_url
    )
    theirs = MessageActivityFactory(
        message__profile=bystander, kind=MessageActivity.CLICK, url=token_url
    )

    profile_erase(profile=person)

    click.refresh_from_db()
    assert click.url == "https://shop.example.com/reset"
    assert click.anonymized_on == timezone.now().date()
    theirs.refresh_from_db()
    assert (theirs.url, theirs.anonymized_on) == (token_url, None)


def test_activity_on_the_persons_message_is_erased_even_without_its_own_link():
    """An open recorded before the profile was known (profile empty) still
    holds the person's IP address: it goes through the message."""
    person, bystander = ProfileFactory(), ProfileFactory()
    unlinked = MessageActivityFactory(message__profile=person, profile=None)
    theirs = MessageActivityFactory(message__profile=bystander, profile=None)

    result = profile_erase(profile=person)

    unlinked.refresh_from_db()
    assert (unlinked.ip_address, unlinked.user_agent) == (None, "")
    assert result.count("messaging.messageactivity") == 1
    theirs.refresh_from_db()
    assert theirs.ip_address == "198.51.100.7"


def _log(user, obj, flag=CHANGE, message='[{"changed": {"fields": ["Email"]}}]'):
    return LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[obj],
        action_flag=flag,
        change_message=message,
        single_object=True,
    )


def test_admin_log_entries_about_the_person_and_their_rows_no_longer_name_them(admin_user):
    person, bystander = ProfileFactory(email="ada@example.com"), ProfileFactory()
    activity = MessageActivityFactory(message__profile=person)
    entries = [
        _log(admin_user, person),
        _log(admin_user, activity.message),
        _log(admin_user, activity),
        _log(admin_user, EventFactory(profile=person)),
        _log(admin_user, SubscriptionPreferenceFactory(profile=person)),
        _log(admin_user, SegmentMembershipFactory(profile=person)),
    ]
    theirs = _log(admin_user, bystander)
    assert "ada@example.com" in entries[1].object_repr

    result = profile_erase(profile=person)

    assert result.count("admin.logentry") == len(entries)
    for entry in entries:
        entry.refresh_from_db()
        model = entry.content_type.model_class()
        assert (entry.object_repr, entry.change_message) == (erased_repr(model), "")
    assert not LogEntry.objects.filter(object_repr__contains="ada@example.com").exists()
    theirs.refresh_from_db()
    assert theirs.object_repr == bystander.email


def test_every_model_found_through_a_profile_has_its_admin_log_rewritten():
    scrubbed = [step.sql for step in erasure_plan() if step.action == SCRUB]
    found = {Profile} | {rel.related_model for rel in Profile._meta.related_objects}
    for kept in kept_rows():
        found |= {kept.model}
    tables = {model._meta.db_table for model in found if not model._meta.auto_created}
    for table in tables:
        assert any(f'FROM "{table}" WHERE' in sql for sql in scrubbed), table


def test_every_row_hanging_off_a_kept_row_is_anonymized_through_it():
    kept = {entry.model: entry for entry in kept_rows()}
    for model in list(kept):
        for relation in model._meta.related_objects:
            child = kept[relation.related_model]
            assert (model, relation.field) in child.parents
