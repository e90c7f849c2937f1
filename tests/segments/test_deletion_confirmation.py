"""A confirmation is for the people the dialog showed, not for whoever the
segment holds when the button is pressed."""

import re
import threading

import pytest
from django.db import connection, connections

from profiles.models import Profile
from segments import services
from segments.deletion import services as deletion
from segments.deletion.selectors import segment_membership_token
from segments.models import DeletionJob, DeletionJobProfile, SegmentMembership
from tests.segments.population import build_population


def url(population):
    return f"/segments/{population.segment.pk}/delete-profiles/"


def dialog_fields(client, population) -> dict:
    """What the dialog's form would post, as a browser would read it."""
    html = client.get(url(population), headers={"HX-Request": "true"}).content.decode()
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def swap_members_keeping_the_count(population):
    """A refresh after new rules: the same number of people, other people."""
    population.segment.rules = {
        "match": "all",
        "conditions": [
            {"type": "property", "field": "plan", "operator": "equals", "value": "paid"}
        ],
    }
    population.segment.save(update_fields=["rules"])
    services.segment_refresh(segment=population.segment)
    members = set(
        SegmentMembership.objects.filter(segment=population.segment).values_list(
            "profile_id", flat=True
        )
    )
    assert members == set(population.survivors)  # same count, nobody in common


@pytest.mark.django_db
def test_a_refresh_that_swaps_the_members_after_the_dialog_opened_starts_nothing(
    editor_client, alice
):
    population = build_population(doomed=4, survivors=4, events_each=0)
    fields = dialog_fields(editor_client, population)
    assert fields["expected_count"] == "4"

    swap_members_keeping_the_count(population)
    response = editor_client.post(url(population), {**fields, "typed_name": "Trial users"})

    assert response.status_code == 409
    assert "was refreshed after this dialog was opened" in response.content.decode()
    assert not DeletionJob.objects.exists()
    assert Profile.objects.filter(pk__in=population.doomed + population.survivors).count() == 8


@pytest.mark.django_db
def test_confirming_the_refreshed_dialog_deletes_the_people_it_showed(editor_client, alice):
    population = build_population(doomed=4, survivors=4, events_each=0)
    stale = dialog_fields(editor_client, population)
    swap_members_keeping_the_count(population)
    refused = editor_client.post(url(population), {**stale, "typed_name": "Trial users"})
    fresh = dict(
        re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', refused.content.decode())
    )
    fresh.pop("csrfmiddlewaretoken", None)
    assert fresh["membership_token"] != stale["membership_token"]

    response = editor_client.post(url(population), {**fresh, "typed_name": "Trial users"})

    assert response.status_code == 302
    job = DeletionJob.objects.get()
    snapshot = set(DeletionJobProfile.objects.filter(job=job).values_list("profile_id", flat=True))
    assert snapshot == set(population.survivors)


@pytest.mark.django_db
def test_a_missing_membership_token_is_refused(editor_client, alice):
    population = build_population(doomed=2, survivors=2, events_each=0)
    fields = dialog_fields(editor_client, population)
    del fields["membership_token"]
    response = editor_client.post(url(population), {**fields, "typed_name": "Trial users"})
    assert response.status_code == 400
    assert "open it again" in response.content.decode()
    assert not DeletionJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_after_a_refresh_updated_the_segment_waits_for_it_and_refuses(alice):
    """The refresh has written the segment row but not committed: the
    confirmation waits for it, sees the new membership stamp and refuses."""
    population = build_population(doomed=3, survivors=3, events_each=0)
    population.segment.refresh_from_db()
    token = segment_membership_token(population.segment)
    refresh = connections.create_connection("default")
    refresh.set_autocommit(False)
    with refresh.cursor() as cursor:
        cursor.execute(
            "UPDATE segments_segment SET last_refreshed_at = now() WHERE id = %s",
            [population.segment.pk],
        )
    refresh.inc_thread_sharing()  # committed from a timer thread
    threading.Timer(0.5, refresh.commit).start()
    with pytest.raises(deletion.CountChanged, match="was refreshed"):
        deletion.deletion_start(
            segment=population.segment,
            user=alice,
            typed_name="Trial users",
            expected_count=3,
            membership_token=token,
        )
    refresh.close()
    assert not DeletionJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_member_committed_while_the_snapshot_is_taken_is_never_deleted(alice, monkeypatch):
    """Counting and copying the membership are one statement: a member that
    another connection commits in between cannot slip into the job."""
    population = build_population(doomed=3, survivors=3, events_each=0)
    newcomer = Profile.objects.create(email="late@example.com")
    real_snapshot = deletion._snapshot_membership

    def snapshot_after_a_commit_elsewhere(**kwargs):
        def add_member():
            SegmentMembership.objects.create(segment=population.segment, profile=newcomer)
            connection.close()

        thread = threading.Thread(target=add_member)
        thread.start()
        thread.join()
        return real_snapshot(**kwargs)

    monkeypatch.setattr(deletion, "_snapshot_membership", snapshot_after_a_commit_elsewhere)
    with pytest.raises(deletion.CountChanged):
        deletion.deletion_start(
            segment=population.segment, user=alice, typed_name="Trial users", expected_count=3
        )
    assert not DeletionJob.objects.exists()
    assert not DeletionJobProfile.objects.filter(profile_id=newcomer.pk).exists()


@pytest.mark.django_db
def test_a_segment_with_nobody_in_it_starts_no_deletion_and_records_none(alice):
    from tests.segments.factories import SegmentFactory

    segment = SegmentFactory(name="Empty", member_count=0)
    with pytest.raises(deletion.DeletionRefused, match="there is nobody to delete"):
        deletion.deletion_start(
            segment=segment,
            user=alice,
            typed_name="Empty",
            expected_count=0,
            membership_token=segment_membership_token(segment),
        )
    assert not DeletionJob.objects.exists()
