"""A person deleted with their segment who is identified again comes back new."""

import json

import pytest

from messaging.models import Message, MessageActivity
from profiles.models import Event, Profile, SubscriptionPreference
from profiles.services import api_key_create
from segments.deletion.services import deletion_run, deletion_start
from segments.models import SegmentMembership
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db


@pytest.fixture
def deleted_person(alice):
    population = build_population(doomed=3, survivors=2, events_each=2)
    person = Profile.objects.get(pk=population.doomed[0])
    person.subscribed = False
    person.properties = {"plan": "trial", "secret": "old"}
    person.save()
    job = deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=3
    ).job
    assert deletion_run(job_id=job.pk) == "completed"
    return {"pk": person.pk, "user_id": person.user_id, "email": person.email}


def post(client, path, body):
    _, key = api_key_create(name="Website", scope="full")
    return client.post(
        path, json.dumps({"tracking_api_key": key, **body}), content_type="application/json"
    )


def assert_brand_new(profile, old_pk):
    assert profile.pk != old_pk
    assert profile.subscribed is True
    assert "secret" not in profile.properties and "plan" not in profile.properties
    assert not SubscriptionPreference.objects.filter(profile=profile).exists()
    assert not SegmentMembership.objects.filter(profile=profile).exists()
    assert not Message.objects.filter(profile=profile).exists()
    assert not MessageActivity.objects.filter(profile=profile).exists()


def test_identifying_a_deleted_person_creates_a_new_subscribed_profile(client, deleted_person):
    response = post(client, "/api/v2/users/track", {"id": deleted_person["user_id"]})
    assert response.status_code == 200, response.content
    profile = Profile.objects.get(user_id=deleted_person["user_id"])
    assert_brand_new(profile, deleted_person["pk"])
    assert not Event.objects.filter(profile=profile).exists()


def test_tracking_an_event_for_a_deleted_person_creates_a_new_profile(client, deleted_person):
    response = post(
        client,
        "/api/v2/events/track",
        {"identity": {"email": deleted_person["email"]}, "event_name": "came_back", "data": {}},
    )
    assert response.status_code == 200, response.content
    profile = Profile.objects.get(email=deleted_person["email"])
    assert_brand_new(profile, deleted_person["pk"])
    assert list(Event.objects.filter(profile=profile).values_list("name", flat=True)) == [
        "came_back"
    ]


def test_old_anonymized_activity_is_not_relinked(client, deleted_person):
    anonymous_before = MessageActivity.objects.filter(profile=None).count()
    post(client, "/api/v2/users/track", {"id": deleted_person["user_id"]})
    assert MessageActivity.objects.filter(profile=None).count() == anonymous_before > 0
    assert not Message.objects.filter(recipient_email=deleted_person["email"]).exists()
