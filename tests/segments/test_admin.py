import json

import pytest

from segments import services
from segments.models import Segment
from tests.segments.factories import SegmentFactory

pytestmark = pytest.mark.django_db

TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def admin_client(client, admin_user, monkeypatch):
    monkeypatch.setattr(services, "async_task", lambda *args: None)
    client.force_login(admin_user)
    return client


def change(segment, **fields):
    """The change form as the admin page posts it, with the hidden initial
    value a JSONField with a callable default renders."""
    rules = json.dumps(segment.rules)
    data = {"name": segment.name, "description": "", "rules": rules, "initial-rules": rules}
    data.update(fields)
    return data


def test_the_admin_refuses_invalid_rules(admin_client):
    segment = SegmentFactory(rules=TRIALS)
    bad = json.dumps({"match": "all", "conditions": []})
    response = admin_client.post(
        f"/admin/segments/segment/{segment.pk}/change/", change(segment, rules=bad)
    )
    assert response.status_code == 200
    assert "the group is empty" in response.content.decode()
    assert Segment.objects.get(pk=segment.pk).rules == TRIALS


def test_new_rules_saved_in_the_admin_request_a_refresh(admin_client):
    segment = SegmentFactory(rules=TRIALS)
    other = json.dumps({"match": "any", "conditions": TRIALS["conditions"]})
    response = admin_client.post(
        f"/admin/segments/segment/{segment.pk}/change/", change(segment, rules=other)
    )
    assert response.status_code == 302
    assert Segment.objects.get(pk=segment.pk).is_refreshing


def test_a_new_name_saved_in_the_admin_does_not(admin_client):
    segment = SegmentFactory(rules=TRIALS)
    admin_client.post(
        f"/admin/segments/segment/{segment.pk}/change/", change(segment, name="Renamed")
    )
    segment.refresh_from_db()
    assert segment.name == "Renamed" and not segment.is_refreshing


def test_a_segment_whose_profiles_are_being_deleted_cannot_be_deleted_in_the_admin(
    admin_client, alice
):
    from segments.deletion.services import deletion_start
    from tests.segments.population import build_population

    population = build_population(doomed=2, survivors=1, events_each=0)
    deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=2
    )
    url = f"/admin/segments/segment/{population.segment.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Segment.objects.filter(pk=population.segment.pk).exists()


def test_deleting_a_segment_in_the_admin_keeps_its_profiles(admin_client):
    from profiles.models import Profile
    from tests.segments.factories import SegmentMembershipFactory

    membership = SegmentMembershipFactory()
    url = f"/admin/segments/segment/{membership.segment_id}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Segment.objects.filter(pk=membership.segment_id).exists()
    assert Profile.objects.filter(pk=membership.profile_id).exists()


@pytest.mark.django_db
def test_memberships_cannot_be_added_or_changed_in_the_admin(admin_client):
    """Only a refresh adds members: a deletion's membership stamp relies on it."""
    from segments.models import SegmentMembership
    from tests.segments.factories import SegmentMembershipFactory

    membership = SegmentMembershipFactory()
    assert admin_client.get("/admin/segments/segmentmembership/add/").status_code == 403
    response = admin_client.post(
        "/admin/segments/segmentmembership/add/",
        {"segment": membership.segment_id, "profile": membership.profile_id},
    )
    assert response.status_code == 403
    change = f"/admin/segments/segmentmembership/{membership.pk}/change/"
    assert admin_client.get(change).status_code == 200  # view only
    admin_client.post(change, {"segment": membership.segment_id, "profile": 1})
    assert SegmentMembership.objects.get().profile_id == membership.profile_id
