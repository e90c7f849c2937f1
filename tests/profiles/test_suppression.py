"""Suppressed people: the ingestion API accepts and discards their writes,
creates nothing, counts them in Segment answers; lifting one in Django admin
lets the person back in, and the admin log names only the digest."""

import threading

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.db import connection, transaction
from django.test import Client

from profiles import ingestion
from profiles.api_input import IdentifyCall, Identity
from profiles.erasure import profiles_erase
from profiles.models import Event, Profile, Suppression
from profiles.services import api_key_create
from profiles.suppression import Suppressed
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.profiles.test_api import basic_auth
from tests.profiles.test_ingestion import (
    WAIT_SECONDS,
    _Thread,
    _wait_until_someone_waits_for_a_lock,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    return api_key_create(name="Website", scope="full")[1]


def suppress(kind, value, job_id=7):
    return Suppression.objects.create(
        kind=kind, digest=Suppression.digest_of(kind, value), job_id=job_id
    )


def nothing_created():
    return not Profile.objects.exists() and not Event.objects.exists()


def vero(client, key, path, body):
    return client.post(path, {**body, "tracking_api_key": key}, content_type="application/json")


def segment(client, key, path, body):
    return client.post(path, body, content_type="application/json", **basic_auth(key))


def test_users_track_for_a_suppressed_user_id_succeeds_and_creates_nothing(client, key):
    suppress("user_id", "u1")
    response = vero(client, key, "/api/v2/users/track", {"id": "u1", "data": {"plan": "pro"}})
    assert response.status_code == 200
    assert response.json() == {"status": 200, "message": "Success."}
    assert nothing_created()


def test_users_track_for_a_suppressed_email_succeeds_and_creates_nothing(client, key):
    suppress("email", "ada@example.com")
    response = vero(
        client, key, "/api/v2/users/track", {"id": "new-id", "email": " ADA@example.com"}
    )
    assert response.status_code == 200
    assert nothing_created()


def test_events_track_for_a_suppressed_person_creates_no_profile_and_no_event(client, key):
    suppress("email", "ada@example.com")
    body = {"identity": {"email": "ada@example.com"}, "event_name": "opened"}
    assert vero(client, key, "/api/v2/events/track", body).status_code == 200
    assert nothing_created()


def test_segment_identify_for_a_suppressed_person_is_counted_as_suppressed(client, key):
    suppress("user_id", "u1")
    body = {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}}
    response = segment(client, key, "/v1/identify", body)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "applied": 0,
        "duplicates": 0,
        "ignored": 0,
        "suppressed": 1,
    }
    assert nothing_created()


def test_a_segment_batch_discards_the_suppressed_and_applies_the_rest(client, key):
    suppress("user_id", "u1")
    suppress("email", "bea@example.com")
    batch = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
            {"type": "track", "userId": "u1", "event": "Order Completed"},
            {"type": "identify", "userId": "u2", "traits": {"email": "BEA@example.com"}},
            {"type": "identify", "userId": "u3", "traits": {"email": "cy@example.com"}},
            {"type": "track", "userId": "u3", "event": "Order Completed"},
        ]
    }
    response = segment(client, key, "/v1/batch", batch)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "applied": 2,
        "duplicates": 0,
        "ignored": 0,
        "suppressed": 3,
    }
    assert list(Profile.objects.values_list("user_id", flat=True)) == ["u3"]
    assert list(Event.objects.values_list("profile__user_id", flat=True)) == ["u3"]


def test_a_suppressed_persons_writes_are_discarded_even_with_a_profile_left(client, key):
    """Someone kept the id (created in admin, say): their writes still go nowhere."""
    profile = ProfileFactory(user_id="u1", properties={"plan": "free"})
    suppress("user_id", "u1")
    vero(client, key, "/api/v2/users/track", {"id": "u1", "data": {"plan": "pro"}})
    segment(client, key, "/v1/track", {"type": "track", "userId": "u1", "event": "x"})
    profile.refresh_from_db()
    assert profile.properties == {"plan": "free"}
    assert not Event.objects.exists()


def test_people_who_are_not_suppressed_are_untouched_by_the_list(client, key):
    suppress("user_id", "u1")
    suppress("email", "ada@example.com")
    vero(client, key, "/api/v2/users/track", {"id": "u10", "email": "ada@example.org"})
    assert Profile.objects.filter(user_id="u10").exists()


def test_the_lookup_is_one_indexed_query_per_request(key):
    suppress("user_id", "u1")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT kind, digest FROM profiles_suppression WHERE digest = ANY(%s)",
            [[Suppression.digest_of("user_id", "u1")]],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "suppression_digest_kind" in plan


def test_lifting_a_suppression_in_admin_lets_the_person_back_and_logs_only_the_digest(
    client, admin_client, key
):
    row = suppress("email", "ada@example.com")
    response = admin_client.post(
        "/admin/profiles/suppression/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Suppression.objects.exists()
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert entry.object_repr == f"Email {row.digest[:12]}…"
    assert "ada" not in entry.object_repr + entry.change_message

    vero(client, key, "/api/v2/users/track", {"email": "ada@example.com"})
    assert Profile.objects.filter(email="ada@example.com").exists()


FIND = "/admin/profiles/suppression/find/"


def test_the_admin_search_takes_a_digest_and_never_a_clear_identifier(admin_client):
    row = suppress("email", "ada@example.com")
    for term in (row.digest, row.digest.upper()):
        page = admin_client.get("/admin/profiles/suppression/", {"q": term})
        assert list(page.context["cl"].result_list) == [row]
    page = admin_client.get("/admin/profiles/suppression/", {"q": "ada@example.com"})
    assert list(page.context["cl"].result_list) == []


def test_the_find_page_shows_a_post_form_linked_from_the_list(admin_client):
    listing = admin_client.get("/admin/profiles/suppression/")
    assert FIND.encode() in listing.content
    page = admin_client.get(FIND)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'method="post"' in body and "csrfmiddlewaretoken" in body
    assert "Email or user id" in body


@pytest.mark.parametrize(
    ("kind", "stored", "typed"),
    [("email", "ada@example.com", " Ada@Example.com "), ("user_id", "u-42", "u-42")],
)
def test_finding_by_email_or_user_id_redirects_to_the_list_by_digest_only(
    admin_client, kind, stored, typed
):
    row = suppress(kind, stored)
    suppress("user_id", "someone-else")
    response = admin_client.post(FIND, {"identifier": typed})
    assert response.status_code == 302
    url = response.url
    assert row.digest in url
    assert stored.split("@")[0].lower() not in url.lower()
    assert "@" not in url and "example" not in url
    page = admin_client.get(url)
    assert list(page.context["cl"].result_list) == [row]
    # Links on the filtered list carry the filters: digests only.
    assert stored.encode() not in page.content
    assert not LogEntry.objects.exists()


def test_finding_someone_not_suppressed_says_so_on_the_form(admin_client):
    suppress("email", "ada@example.com")
    page = admin_client.post(FIND, {"identifier": "grace@example.com"})
    assert page.status_code == 200
    assert b"Nobody with this email or user id is on the suppression list." in page.content
    assert admin_client.post(FIND, {"identifier": "  "}).status_code == 200


def test_the_find_page_needs_the_view_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(FIND).status_code == 403
    assert client.post(FIND, {"identifier": "ada@example.com"}).status_code == 403


def test_staff_with_the_view_permission_may_find(client, django_user_model):
    from django.contrib.auth.models import Permission

    row = suppress("email", "ada@example.com")
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_suppression"))
    client.force_login(staff)
    response = client.post(FIND, {"identifier": "ada@example.com"})
    assert response.status_code == 302 and row.digest in response.url


def test_the_find_page_is_for_staff_only(editor_client, client):
    assert editor_client.get(FIND).status_code == 302
    assert client.post(FIND, {"identifier": "ada@example.com"}).status_code == 302


def test_the_find_page_refuses_a_post_without_csrf(admin_user):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)
    assert csrf_client.post(FIND, {"identifier": "ada@example.com"}).status_code == 403


def test_the_find_page_takes_get_and_post_only(admin_client):
    assert admin_client.put(FIND).status_code == 405


def test_suppressions_cannot_be_added_or_edited_in_admin(admin_client):
    row = suppress("user_id", "u1")
    assert admin_client.get("/admin/profiles/suppression/add/").status_code == 403
    admin_client.post(
        f"/admin/profiles/suppression/{row.pk}/change/", {"kind": "email", "digest": "x" * 64}
    )
    row.refresh_from_db()
    assert row.kind == "user_id"


def test_the_suppression_admin_is_for_staff_only(editor_client):
    assert editor_client.get("/admin/profiles/suppression/").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_a_write_waiting_for_a_profile_whose_erasure_suppresses_it_creates_nothing():
    """The race the suppression check must win: the write finds no suppression
    and waits for the profile's row; the erasure batch deletes the profile and
    suppresses the person in the same transaction; the write then finds the id
    free. It must neither create the profile nor answer anything but success."""
    _, key = api_key_create(name="k", scope="full")
    old = ProfileFactory(user_id="u1")
    EventFactory(profile=old)
    locked, go = threading.Event(), threading.Event()

    def erase_and_suppress():
        with transaction.atomic():
            list(Profile.objects.select_for_update().filter(pk=old.pk))
            locked.set()
            assert go.wait(WAIT_SECONDS)
            suppress("user_id", "u1")
            return profiles_erase(profile_ids=[old.pk])

    eraser = _Thread(erase_and_suppress)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)
    body = {"id": "u1", "data": {"plan": "pro"}, "tracking_api_key": key}
    ingester = _Thread(
        lambda: Client().post("/api/v2/users/track", body, content_type="application/json")
    )
    ingester.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()
    assert eraser.outcome().deleted == 1
    assert ingester.outcome().status_code == 200
    assert not Profile.objects.exists()


def test_the_service_raises_suppressed_and_writes_nothing():
    suppress("user_id", "u1")
    with pytest.raises(Suppressed):
        ingestion.profile_identify(
            call=IdentifyCall(identity=Identity(user_id="u1", email=""), data={})
        )
    assert nothing_created()
