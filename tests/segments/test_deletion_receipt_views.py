"""The receipt page and download, the link to it on the segment page, and
the dialog's "Also stop these people from coming back"."""

import json
import re

import pytest
from django.test import Client

from profiles.models import Event, Profile, Suppression
from profiles.services import api_key_create
from segments.deletion.selectors import segment_membership_token
from segments.models import DeletionJob
from tests.profiles.test_api import basic_auth
from tests.segments.population import build_population
from tests.segments.test_deletion import run_to_end, start
from tests.segments.test_deletion_views import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def population():
    return build_population(doomed=4, survivors=4, events_each=1)


@pytest.fixture
def ended_job(population, alice):
    job = start(population, alice)
    run_to_end(job)
    return job


def receipt_url(job, kind=""):
    return f"/segments/deletions/{job.pk}/receipt{'.json' if kind == 'json' else '/'}"


# --- the receipt page --------------------------------------------------------------


def test_the_receipt_page_says_who_when_what_and_how_many(editor_client, ended_job):
    response = editor_client.get(receipt_url(ended_job))
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Deletion receipt #{ended_job.pk}" in html
    assert "Trial users" in html and "alice" in html and "Completed" in html
    assert "4 profiles, each recorded only as a fingerprint (SHA-256)" in html
    assert "anyone who knows an address can compute its fingerprint" in html
    assert f'href="/segments/deletions/{ended_job.pk}/receipt.json"' in html
    for profile_email in Profile.objects.values_list("email", flat=True):
        assert profile_email not in html


def test_the_receipt_downloads_as_json_with_every_digest(editor_client, ended_job):
    response = editor_client.get(receipt_url(ended_job, "json"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == (
        f'attachment; filename="deletion-{ended_job.pk}.json"'
    )
    assert response["Cache-Control"] == "no-store, private"
    document = json.loads(b"".join(response.streaming_content))
    assert document["job"] == ended_job.pk
    assert document["counts"]["profiles_deleted"] == 4
    assert len(document["profiles"]) == 4


def test_the_receipt_page_shows_nested_rules_with_every_identifier_as_its_fingerprint(
    editor_client, population, alice
):
    from tests.segments.test_deletion_receipts import CLEAR_IDENTIFIERS, NESTED_RULES, sha

    population.segment.rules = NESTED_RULES
    population.segment.save()
    job = start(population, alice)
    run_to_end(job)
    html = editor_client.get(receipt_url(job)).content.decode()
    for clear in CLEAR_IDENTIFIERS:
        assert clear not in html
    assert "Attribute “country” is “FR”" in html
    # The nested group's conditions are shown, each digest as what it stands for.
    assert f"Email is the address whose SHA-256 is {sha('alan@turing.example')}" in html
    assert f"User id contains a text whose SHA-256 (as written) is {sha('zed-')}" in html
    assert "Email is set" in html
    assert "Any of these:" in html
    assert f"User id is not the user id whose SHA-256 is {sha('u-77')}" in html
    assert "not valid" not in html


@pytest.mark.parametrize("kind", ["", "json"])
def test_the_receipt_needs_a_login(client, ended_job, kind):
    response = client.get(receipt_url(ended_job, kind))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("kind", ["", "json"])
def test_viewers_and_outsiders_cannot_see_a_receipt(viewer_client, ended_job, kind, charlie):
    assert viewer_client.get(receipt_url(ended_job, kind)).status_code == 403
    outsider = Client()
    outsider.force_login(charlie)
    assert outsider.get(receipt_url(ended_job, kind)).status_code == 403


@pytest.mark.parametrize("kind", ["", "json"])
def test_an_unknown_job_has_no_receipt(editor_client, kind):
    response = editor_client.get(f"/segments/deletions/999999/receipt{'.json' if kind else '/'}")
    assert response.status_code == 404


@pytest.mark.parametrize("kind", ["", "json"])
def test_the_receipt_refuses_post(editor_client, ended_job, kind):
    assert editor_client.post(receipt_url(ended_job, kind)).status_code == 405


@pytest.mark.parametrize("kind", ["", "json"])
def test_a_running_job_has_no_receipt_yet_and_says_so(editor_client, population, alice, kind):
    job = start(population, alice)
    response = editor_client.get(receipt_url(job, kind))
    assert response.status_code == 409
    html = response.content.decode()
    assert "This deletion is still running, so it has no receipt yet." in html
    assert "Download the receipt" not in html


def test_the_receipt_of_a_job_whose_segment_was_deleted_still_opens(editor_client, ended_job):
    ended_job.segment.delete()
    response = editor_client.get(receipt_url(ended_job))
    assert response.status_code == 200
    assert b"Trial users" in response.content


def test_the_segment_page_links_an_ended_jobs_receipt_for_editors(editor_client, ended_job):
    page = editor_client.get(f"/segments/{ended_job.segment_id}/").content.decode()
    assert f'href="/segments/deletions/{ended_job.pk}/receipt/"' in page


def test_the_segment_page_shows_viewers_no_receipt_link(viewer_client, ended_job):
    page = viewer_client.get(f"/segments/{ended_job.segment_id}/").content.decode()
    assert "/receipt/" not in page


def test_the_segment_page_links_no_receipt_while_the_job_runs(editor_client, population, alice):
    start(population, alice)
    page = editor_client.get(f"/segments/{population.segment.pk}/").content.decode()
    assert "/receipt/" not in page


def ended_and_running_jobs(population):
    """Three ended jobs (completed, failed, cancelled) and a running one on the segment."""
    segment = population.segment
    ended = [
        DeletionJob.objects.create(
            segment=segment, segment_name=segment.name, created_by_username="alice", status=status
        )
        for status in ("completed", "failed", "cancelled")
    ]
    running = DeletionJob.objects.create(
        segment=segment, segment_name=segment.name, created_by_username="alice", status="running"
    )
    return ended, running


def receipt_hrefs(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'href="/segments/deletions/(\d+)/receipt/"', html)}


@pytest.mark.parametrize("page", ["segment", "deletions"])
def test_every_ended_job_in_the_history_links_its_receipt_for_editors(
    editor_client, population, page
):
    ended, running = ended_and_running_jobs(population)
    address = f"/segments/{population.segment.pk}/" if page == "segment" else "/segments/deletions/"
    html = editor_client.get(address).content.decode()
    assert receipt_hrefs(html) == {job.pk for job in ended}
    for job in ended:
        assert f'data-testid="receipt-link-{job.pk}"' in html
    assert f'data-testid="receipt-link-{running.pk}"' not in html


@pytest.mark.parametrize("page", ["segment", "deletions"])
def test_viewers_see_no_receipt_link_in_the_history(viewer_client, population, page):
    ended_and_running_jobs(population)
    address = f"/segments/{population.segment.pk}/" if page == "segment" else "/segments/deletions/"
    html = viewer_client.get(address).content.decode()
    assert "/receipt/" not in html and ">Receipt<" not in html


def test_the_segment_pages_deletion_history_headers_are_column_headers(editor_client, ended_job):
    html = editor_client.get(f"/segments/{ended_job.segment_id}/").content.decode()
    history = html[html.index('id="deletion-history"') :]
    history = history[: history.index("</thead>")]
    assert len(re.findall(r"<th[ >]", history)) == history.count('<th scope="col"') == 9


# --- the dialog's choice -------------------------------------------------------------


def confirm(client, population, typed="Trial users", **choices):
    population.segment.refresh_from_db()
    data = {
        "typed_name": typed,
        "expected_count": 4,
        "membership_token": segment_membership_token(population.segment),
        **choices,
    }
    return client.post(url(population), data)


def test_the_dialog_offers_suppression_off_by_default(editor_client, population):
    html = editor_client.get(url(population), headers={"HX-Request": "true"}).content.decode()
    assert '<label for="id_suppress">Also stop these people from coming back</label>' in html
    checkbox = html[html.index('id="id_suppress"') - 40 : html.index('id="id_suppress"') + 120]
    assert 'type="checkbox"' in checkbox and "checked" not in checkbox
    assert html.index('id="id_suppress"') < html.index('<label for="id_typed_name">')


def test_confirming_without_the_choice_does_not_suppress(editor_client, population):
    assert confirm(editor_client, population).status_code == 302
    assert DeletionJob.objects.get().suppress is False


def test_confirming_with_the_choice_suppresses_them_once_deleted(
    editor_client, population, django_capture_on_commit_callbacks
):
    doomed = list(Profile.objects.filter(pk__in=population.doomed).values_list("user_id", "email"))
    assert confirm(editor_client, population, suppress="on").status_code == 302
    job = DeletionJob.objects.get()
    assert job.suppress is True
    run_to_end(job)
    assert Suppression.objects.filter(job_id=job.pk).count() == 8

    _, key = api_key_create(name="Website", scope="full")
    api = Client()
    user_id, email = doomed[0]
    api.post(
        "/api/v2/users/track",
        {"id": user_id, "tracking_api_key": key},
        content_type="application/json",
    )
    answer = api.post(
        "/v1/batch",
        {"batch": [{"type": "identify", "userId": "someone-new", "traits": {"email": email}}]},
        content_type="application/json",
        **basic_auth(key),
    ).json()
    assert answer["suppressed"] == 1
    assert not Profile.objects.filter(user_id__in=[user_id, "someone-new"]).exists()
    assert not Event.objects.filter(profile__user_id=user_id).exists()


def test_a_refused_confirmation_keeps_the_choice_ticked(editor_client, population):
    response = confirm(editor_client, population, typed="trial users", suppress="on")
    assert response.status_code == 400
    html = response.content.decode()
    checkbox = html[html.index('id="id_suppress"') : html.index('id="id_suppress"') + 80]
    assert "checked" in checkbox
    assert not DeletionJob.objects.exists()
