"""The 400, 403, 404 and 500 pages: in the site's layout, saying what
happened and where to go, never Django's debug page with its URL patterns
(the demo runs with DEBUG on)."""

import pytest
from django.contrib.staticfiles import finders
from django.urls import path

from segments.deletion.services import deletion_run, deletion_start
from tests.profiles.factories import ProfileFactory
from tests.segments.population import build_population
from vero_admin.urls import handler400, handler403, handler404, handler500  # noqa: F401
from vero_admin.urls import urlpatterns as site_urlpatterns


def boom(request):
    raise RuntimeError("an unexpected error")


# For the 500 test: the site's URLs and handlers, plus a view that fails.
urlpatterns = [*site_urlpatterns, path("boom/", boom)]

DEBUG_LISTING = ("URLconf", "urlpatterns", "Django tried these URL patterns", "technical_404")


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def page(response) -> str:
    return response.content.decode()


def assert_site_layout(html, *, nav=True):
    assert 'class="topbar"' in html
    assert 'rel="icon"' in html
    assert ('aria-label="Main"' in html) == nav
    for marker in DEBUG_LISTING:
        assert marker not in html


@pytest.mark.django_db
def test_a_missing_page_in_debug_is_the_sites_404_not_the_url_listing(debug_on, viewer_client):
    response = viewer_client.get("/no-such-page/")
    assert response.status_code == 404
    html = page(response)
    assert_site_layout(html)
    assert "Page not found" in html
    assert "/no-such-page/" in html
    assert "Segments</a>" in html


@pytest.mark.django_db
def test_an_unknown_segment_in_debug_is_the_sites_404(debug_on, viewer_client):
    response = viewer_client.get("/segments/987654/")
    assert response.status_code == 404
    assert_site_layout(page(response))
    assert "Page not found" in page(response)


@pytest.mark.django_db
def test_a_missing_page_without_debug_is_the_sites_404(viewer_client):
    response = viewer_client.get("/segments/987654/")
    assert response.status_code == 404
    assert_site_layout(page(response))


@pytest.mark.django_db
def test_a_missing_page_still_redirects_to_its_address_with_a_slash(debug_on, viewer_client):
    response = viewer_client.get("/segments")
    assert response.status_code == 301
    assert response["Location"] == "/segments/"


@pytest.mark.django_db
def test_a_missing_page_for_someone_logged_out_offers_the_login(debug_on, client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = page(response)
    assert_site_layout(html, nav=False)
    assert 'href="/accounts/login/"' in html


@pytest.mark.django_db
def test_an_old_link_to_a_deleted_profile_says_which_deletion_deleted_it(
    debug_on, alice, viewer_client
):
    population = build_population(doomed=2, survivors=1, events_each=0, name="Lapsed trials")
    job = deletion_start(
        segment=population.segment, user=alice, typed_name="Lapsed trials", expected_count=2
    ).job
    while deletion_run(job_id=job.pk, slice_seconds=60) not in ("completed", "failed"):
        pass
    job.refresh_from_db()
    assert job.status == "completed"

    response = viewer_client.get(f"/profiles/{population.doomed[0]}/")
    assert response.status_code == 404
    html = page(response)
    assert_site_layout(html)
    assert "This profile was deleted" in html
    assert "Lapsed trials" in html
    assert "confirmed by alice" in html
    assert job.finished_at.strftime("%Y") in html
    assert f'href="/segments/{population.segment.pk}/"' in html


@pytest.mark.django_db
def test_a_deletion_that_has_not_reached_a_profile_is_not_blamed_for_it(alice, viewer_client):
    population = build_population(doomed=2, survivors=1, events_each=0, name="Lapsed trials")
    deletion_start(
        segment=population.segment, user=alice, typed_name="Lapsed trials", expected_count=2
    )
    # Gone by other means (the API's single delete) before the job's first batch.
    from profiles.models import Profile

    Profile.objects.filter(pk=population.doomed[0]).delete()
    html = page(viewer_client.get(f"/profiles/{population.doomed[0]}/"))
    assert "This profile was deleted" not in html
    assert "Profile not found" in html


@pytest.mark.django_db
def test_a_profile_that_never_existed_is_not_found_with_a_way_to_search(debug_on, viewer_client):
    profile = ProfileFactory()
    response = viewer_client.get(f"/profiles/{profile.pk + 1000}/")
    assert response.status_code == 404
    html = page(response)
    assert_site_layout(html)
    assert "Profile not found" in html
    assert "deleted" in html
    assert 'href="/profiles/"' in html


@pytest.mark.django_db
def test_a_viewer_is_told_the_page_needs_edit_access_and_who_gives_it(viewer_client):
    response = viewer_client.get("/segments/new/")
    assert response.status_code == 403
    html = page(response)
    assert_site_layout(html)
    assert "with <strong>View</strong> access" in html
    assert "<strong>View and Edit</strong> access" in html
    assert "Django admin" in html


@pytest.mark.django_db
def test_someone_without_access_is_told_they_have_none(outsider_client):
    response = outsider_client.get("/segments/")
    assert response.status_code == 403
    html = page(response)
    assert_site_layout(html)
    assert "no access to vero_admin" in html
    assert "Django admin" in html


@pytest.mark.django_db
def test_an_htmx_request_gets_the_message_without_a_second_layout(viewer_client):
    response = viewer_client.post("/segments/new/", headers={"HX-Request": "true"})
    assert response.status_code == 403
    html = page(response)
    assert "You don't have access" in html
    assert 'class="topbar"' not in html


@pytest.mark.django_db
def test_a_request_we_cannot_read_is_a_400_in_the_sites_layout(viewer_client):
    too_many_fields = "&".join(f"f{i}=1" for i in range(1500))
    response = viewer_client.get(f"/profiles/?{too_many_fields}")
    assert response.status_code == 400
    html = page(response)
    assert_site_layout(html)
    assert "could not be understood" in html
    assert "Nothing was changed" in html


@pytest.mark.urls(__name__)
def test_a_server_error_page_renders_without_a_database_or_a_user(client):
    # No django_db mark: any query while rendering would fail this test.
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    html = page(response)
    assert "Something went wrong on our side" in html
    assert 'class="topbar"' in html
    assert 'href="/segments/"' in html
    assert "RuntimeError" not in html


@pytest.mark.django_db
def test_the_favicon_is_linked_and_favicon_ico_redirects_to_it(viewer_client):
    html = page(viewer_client.get("/segments/"))
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    response = viewer_client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/favicon.svg"
    assert finders.find("favicon.svg")


def test_the_error_templates_are_the_sites_own():
    from django.template.loader import get_template

    for name in ("400.html", "403.html", "404.html", "500.html"):
        assert "templates" in get_template(name).origin.name


@pytest.mark.django_db
def test_an_expired_form_says_nothing_changed_and_what_to_do(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/segments/new/", {"name": "x"})
    assert response.status_code == 403
    html = page(response)
    assert "This form has expired" in html
    assert "Nothing was changed" in html
    assert 'class="topbar"' in html
    assert "Request aborted" not in html  # Django's own page
