"""Export before deleting: the dialog's members as a streamed CSV."""

import csv
import io
import logging
import threading

import pytest
from django.contrib.auth.models import Permission, User
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone

from segments.deletion import export
from segments.deletion.selectors import segment_membership_token
from segments.models import ProfileExport, Segment
from segments.services import segment_refresh
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

PLAN_TRIAL = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def world():
    """Three members with awkward attribute keys, one non-member, one
    member of another segment only."""
    segment = SegmentFactory(name="Trial users", rules=PLAN_TRIAL, last_refreshed_at=None)
    ada = ProfileFactory(
        email="ada@example.com",
        user_id="u-ada",
        properties={"plan": "trial", "0": "zero", "items": [1, 2], "a,b": "comma", "=cmd": 5},
    )
    bea = ProfileFactory(
        email="bea@example.com",
        user_id=None,
        subscribed=False,
        properties={"plan": "trial", "seats": 2.5, "vip": True, "note": None},
    )
    cy = ProfileFactory(
        email="cy@example.com",
        user_id='=HYPERLINK("http://evil.test")',
        properties={"plan": "trial", "0": "-2+3", "items": "@SUM(A1)", "note": "\tx"},
    )
    ProfileFactory(email="outsider@example.com", properties={"plan": "pro", "secret": "x"})
    segment_refresh(segment=segment)
    segment.refresh_from_db()
    return {"segment": segment, "members": [ada, bea, cy]}


def download(client, segment, *, token=None, count=None):
    segment.refresh_from_db()
    data = {
        "membership_token": segment_membership_token(segment) if token is None else token,
        "expected_count": segment.member_count if count is None else count,
        "typed_name": "",  # the deletion form's other field comes along; ignored
    }
    return client.post(f"/segments/{segment.pk}/delete-profiles/export/", data)


def parse(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


def test_the_csv_holds_exactly_the_members_and_their_attributes(editor_client, world):
    response = download(editor_client, world["segment"])
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="trial-users-profiles-')
    assert response["Cache-Control"] == "no-store, private"
    header, *rows = parse(response)
    keys = ["'=cmd", "0", "a,b", "items", "note", "plan", "seats", "vip"]
    assert header[:3] == ["email", "user id", "subscription status"]
    assert sorted(header[3:]) == sorted(keys)
    by_email = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(by_email) == {"ada@example.com", "bea@example.com", "cy@example.com"}
    ada, bea = by_email["ada@example.com"], by_email["bea@example.com"]
    assert ada == {
        "email": "ada@example.com",
        "user id": "u-ada",
        "subscription status": "subscribed",
        "'=cmd": "5",
        "0": "zero",
        "a,b": "comma",
        "items": "[1, 2]",
        "note": "",
        "plan": "trial",
        "seats": "",
        "vip": "",
    }
    assert bea["user id"] == "" and bea["subscription status"] == "unsubscribed"
    assert (bea["seats"], bea["vip"], bea["note"], bea["0"]) == ("2.5", "true", "", "")


def test_cells_a_spreadsheet_would_run_as_formulas_get_an_apostrophe(editor_client, world):
    header, *rows = parse(download(editor_client, world["segment"]))
    cy = next(dict(zip(header, row, strict=True)) for row in rows if row[0] == "cy@example.com")
    assert cy["user id"] == '\'=HYPERLINK("http://evil.test")'
    assert cy["0"] == "'-2+3"
    assert cy["items"] == "'@SUM(A1)"
    assert cy["note"] == "'\tx"
    assert "'=cmd" in header


def test_nobody_added_after_the_stamp_is_exported(editor_client, world):
    """A refresh after the dialog opened adds someone: the old stamp is
    refused rather than answered with a different set of people."""
    segment = world["segment"]
    old = segment_membership_token(segment)
    ProfileFactory(email="late@example.com", properties={"plan": "trial"})
    segment_refresh(segment=segment)
    response = download(editor_client, segment, token=old, count=3)
    assert response.status_code == 409
    html = response.content.decode()
    assert "was refreshed after the dialog opened" in html
    assert "Nothing was downloaded" in html
    assert "late@example.com" not in html
    assert not ProfileExport.objects.exists()
    # The new stamp gets the new member.
    _header, *rows = parse(download(editor_client, segment))
    assert "late@example.com" in {row[0] for row in rows} and len(rows) == 4


def test_a_segment_never_refreshed_exports_a_header_only(editor_client):
    segment = SegmentFactory(last_refreshed_at=None, member_count=None)
    response = download(editor_client, segment, token="never-refreshed", count=0)
    assert parse(response) == [["email", "user id", "subscription status"]]


def test_the_rows_come_from_a_server_side_cursor_in_batches(editor_client, world, monkeypatch):
    monkeypatch.setattr(export, "BATCH_SIZE", 2)
    segment = world["segment"]
    for n in range(4):
        SegmentMembershipFactory(segment=segment, profile=ProfileFactory(properties={"n": n}))
    response = download(editor_client, segment, count=7)
    chunks = iter(response.streaming_content)
    first = next(chunks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, is_holdable FROM pg_cursors")
        cursors = cursor.fetchall()
    assert any("ORDER BY m.profile_id" in sql and not holdable for sql, holdable in cursors)
    rest = list(chunks)
    assert len(rest) >= 3  # 7 rows, 2 at a time
    body = (first + b"".join(rest)).decode()
    assert len(list(csv.reader(io.StringIO(body)))) == 1 + 7
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        assert cursor.fetchone()[0] == 0


def test_the_download_is_recorded_without_anyone_in_it(editor_client, world, alice):
    segment = world["segment"]
    response = download(editor_client, segment)
    assert ProfileExport.objects.get().status == ProfileExport.Status.STARTED
    parse(response)
    record = ProfileExport.objects.get()
    assert (record.user, record.username, record.segment, record.segment_name) == (
        alice,
        "alice",
        segment,
        "Trial users",
    )
    assert record.membership_token == segment_membership_token(segment)
    assert (record.expected_count, record.rows_exported) == (3, 3)
    assert record.status == ProfileExport.Status.COMPLETED and record.finished_at
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_jsonb(e)::text FROM segments_profileexport e")
        stored = cursor.fetchone()[0]
    for member in world["members"]:
        assert member.email not in stored and (member.user_id or "@@") not in stored


def test_a_download_stopped_part_way_is_recorded_as_interrupted(world, alice, rf, monkeypatch):
    """The server closes the response when the client goes away; called
    directly, as the test client would also close the test's connection."""
    monkeypatch.setattr(export, "BATCH_SIZE", 1)
    segment = world["segment"]
    request = rf.post(
        "/",
        {"membership_token": segment_membership_token(segment), "expected_count": 3},
    )
    request.user = alice
    response = export.export_members(request, segment.pk)
    chunks = iter(response.streaming_content)
    assert next(chunks) == "\ufeff".encode()  # at once, before any query
    next(chunks)  # the header and the first member
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    record = ProfileExport.objects.get()
    assert (record.status, record.rows_exported) == (ProfileExport.Status.INTERRUPTED, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        assert cursor.fetchone()[0] == 0


def test_nothing_logs_a_member(editor_client, world, caplog):
    with caplog.at_level(logging.DEBUG):
        parse(download(editor_client, world["segment"]))
        download(editor_client, world["segment"], token="2001-01-01T00:00:00+00:00")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for member in world["members"]:
        assert member.email not in logged


# Access and input ----------------------------------------------------------------


def test_it_requires_a_login(client, world):
    response = download(client, world["segment"])
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not ProfileExport.objects.exists()


def test_viewers_and_outsiders_get_403(client, world, bob, charlie):
    for user in (bob, charlie):
        client.force_login(user)
        assert download(client, world["segment"]).status_code == 403
    assert not ProfileExport.objects.exists()


def test_someone_who_may_delete_but_not_see_profiles_gets_403_and_no_button(client, world):
    """The file lists the members, which the segment's page shows only with
    profile access; the right to delete them is not the right to read them."""
    user = User.objects.create_user("deleter")
    user.user_permissions.set(
        Permission.objects.filter(codename__in=("view_segment", "change_segment", "delete_profile"))
    )
    client.force_login(user)
    assert download(client, world["segment"]).status_code == 403
    assert not ProfileExport.objects.exists()
    dialog = client.get(f"/segments/{world['segment'].pk}/delete-profiles/")
    assert dialog.status_code == 200
    assert b'data-testid="dialog-export"' not in dialog.content
    assert b"needs access to profiles" in dialog.content


def test_an_unknown_segment_is_404(editor_client, world):
    response = editor_client.post(
        "/segments/999999/delete-profiles/export/",
        {"membership_token": "never-refreshed", "expected_count": 0},
    )
    assert response.status_code == 404


def test_it_is_post_only(editor_client, world):
    response = editor_client.get(f"/segments/{world['segment'].pk}/delete-profiles/export/")
    assert response.status_code == 405
    assert not ProfileExport.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"membership_token": "yesterday", "expected_count": 3},
        {"membership_token": "", "expected_count": 3},
        {"expected_count": 3},
        {"membership_token": "never-refreshed", "expected_count": -1},
        {"membership_token": "never-refreshed", "expected_count": "many"},
        {"membership_token": "never-refreshed"},
    ],
)
def test_a_bad_stamp_or_count_is_refused_with_a_clear_message(editor_client, world, data):
    response = editor_client.post(f"/segments/{world['segment'].pk}/delete-profiles/export/", data)
    assert response.status_code == 400
    assert "Open it again and download from there" in response.content.decode()
    assert not ProfileExport.objects.exists()


# A refresh during a download ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_refresh_committed_mid_download_changes_nothing_in_the_file(alice, monkeypatch):
    """The stamp, the keys and every row come from one snapshot: a refresh
    that commits while the file streams (removing a member and adding one,
    with a new attribute) changes nothing in it."""
    monkeypatch.setattr(export, "BATCH_SIZE", 1)
    segment = SegmentFactory(name="Trial users", rules=PLAN_TRIAL, last_refreshed_at=None)
    members = [ProfileFactory(properties={"plan": "trial"}) for _ in range(3)]
    segment_refresh(segment=segment)
    client = Client()
    client.force_login(alice)
    response = download(client, segment)
    chunks = iter(response.streaming_content)
    first = next(chunks)

    refreshed = []

    def refresh_elsewhere():
        from django.db import connection as other

        try:
            ProfileFactory(email="late@example.com", properties={"plan": "trial", "new": 1})
            members[2].properties = {"plan": "pro"}
            members[2].save()
            elsewhere = Segment.objects.get(pk=segment.pk)
            segment_refresh(segment=elsewhere)
            refreshed.append(segment_membership_token(elsewhere))
        finally:
            other.close()

    thread = threading.Thread(target=refresh_elsewhere)
    thread.start()
    thread.join(30)
    body = (first + b"".join(chunks)).decode()
    assert refreshed and refreshed[0] != ProfileExport.objects.get().membership_token
    header, *rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert header == ["email", "user id", "subscription status", "plan"]
    assert sorted(row[0] for row in rows) == sorted(m.email for m in members)
    assert ProfileExport.objects.get().rows_exported == 3


@pytest.mark.django_db(transaction=True)
def test_a_refresh_committed_between_the_stamp_and_the_rows_changes_nothing(alice, monkeypatch):
    """The stamp is read, then the keys, then the cursor opens: a refresh
    that commits in between is not seen by the rows either (one snapshot),
    so the file is still the stamp's people, with the stamp's columns."""
    segment = SegmentFactory(name="Trial users", rules=PLAN_TRIAL, last_refreshed_at=None)
    members = [ProfileFactory(properties={"plan": "trial"}) for _ in range(3)]
    segment_refresh(segment=segment)
    real_chunked_cursor = connection.chunked_cursor

    def refresh_then_open():
        def refresh_elsewhere():
            from django.db import connection as other

            try:
                ProfileFactory(email="late@example.com", properties={"plan": "trial", "new": 1})
                segment_refresh(segment=Segment.objects.get(pk=segment.pk))
            finally:
                other.close()

        thread = threading.Thread(target=refresh_elsewhere)
        thread.start()
        thread.join(30)
        return real_chunked_cursor()

    monkeypatch.setattr(connection, "chunked_cursor", refresh_then_open)
    client = Client()
    client.force_login(alice)
    header, *rows = parse(download(client, segment))
    assert header == ["email", "user id", "subscription status", "plan"]
    assert sorted(row[0] for row in rows) == sorted(m.email for m in members)
    assert Segment.objects.get(pk=segment.pk).member_count == 4


def test_django_admin_lists_the_downloads_read_only(editor_client, world, admin_user):
    parse(download(editor_client, world["segment"]))
    record = ProfileExport.objects.get()
    admin = Client()
    admin.force_login(admin_user)
    page = admin.get("/admin/segments/profileexport/").content.decode()
    assert "alice" in page and "Trial users" in page
    assert admin.get("/admin/segments/profileexport/add/").status_code == 403
    change = admin.post(f"/admin/segments/profileexport/{record.pk}/change/", {"username": "x"})
    assert change.status_code == 403
    assert ProfileExport.objects.get().username == "alice"


def test_a_refresh_just_before_the_snapshot_is_refused_and_recorded(world, alice):
    """The view's segment still has the old stamp; the snapshot sees the
    refresh that committed after it was read: refused, and said so."""
    segment = world["segment"]
    token = segment_membership_token(segment)
    Segment.objects.filter(pk=segment.pk).update(last_refreshed_at=timezone.now())
    with pytest.raises(export.StaleMembership):
        export.profile_export_open(
            segment=segment, user=alice, membership_token=token, expected_count=3
        )
    record = ProfileExport.objects.get()
    assert (record.status, record.rows_exported) == (ProfileExport.Status.REFUSED, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        assert cursor.fetchone()[0] == 0
