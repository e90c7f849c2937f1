import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from profiles.models import Event
from tests.messaging.factories import MessageActivityFactory
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

PROFILE_LINK = re.compile(rb'href="/profiles/\d+/"')


@pytest.fixture
def anonymous():
    return Client()


def test_the_profile_list_shows_profiles(viewer_client):
    ProfileFactory(email="ada@example.com")
    response = viewer_client.get("/profiles/")
    assert response.status_code == 200
    assert b"ada@example.com" in response.content


def test_the_profile_list_finds_by_email_prefix_and_user_id(viewer_client):
    ProfileFactory(email="ada@example.com", user_id="a-1")
    ProfileFactory(email="bea@example.com", user_id="b-2")
    assert b"bea@" not in viewer_client.get("/profiles/", {"q": "ADA"}).content
    assert b"ada@" in viewer_client.get("/profiles/", {"q": "ADA"}).content
    assert b"bea@" in viewer_client.get("/profiles/", {"q": "b-2"}).content


def test_the_profile_list_finds_any_part_of_an_email_user_id_or_attribute_value(viewer_client):
    ada = ProfileFactory(email="ada.lovelace@example.com", user_id="crm-1815")
    grace = ProfileFactory(email="gh@example.org", properties={"last_name": "Hopper"})
    ProfileFactory(email="someone@example.net", user_id="crm-2000")

    def emails(query):
        return [p.email for p in viewer_client.get("/profiles/", {"q": query}).context["page"]]

    assert emails("LOVELACE") == [ada.email]
    assert emails("m-181") == [ada.email]
    assert emails("hopp") == [grace.email]


def test_a_search_says_how_many_it_found_and_names_an_exact_match(viewer_client):
    exact = ProfileFactory(email="lee@example.com", user_id="lee")
    ProfileFactory(email="ashlee@example.com")
    html = viewer_client.get("/profiles/", {"q": "lee"}).content.decode()
    assert "Profiles 1\N{EN DASH}2 of 2" in html
    assert f'Exact match: <a href="/profiles/{exact.pk}/">lee@example.com</a> (user id lee)' in html


def test_a_short_search_says_it_finds_only_an_exact_user_id_or_email(viewer_client):
    ProfileFactory(email="ab@example.com", user_id="ab")
    ProfileFactory(email="abe@example.com")
    response = viewer_client.get("/profiles/", {"q": "ab"})
    assert [p.user_id for p in response.context["page"]] == ["ab"]
    assert "too short to search inside" in response.content.decode()


@pytest.mark.parametrize(
    "query, message",
    [
        ("x" * 256, "The search is too long: at most 255 characters."),
        ("ada\x00", "The search contains a character that is not valid text."),
    ],
)
def test_a_bad_search_is_refused_with_a_message(viewer_client, query, message):
    ProfileFactory(email="ada@example.com")
    response = viewer_client.get("/profiles/", {"q": query})
    assert response.status_code == 400
    html = response.content.decode()
    assert f'role="alert" id="q-error">{message}</p>' in html
    assert 'aria-invalid="true"' in html and "ada@example.com" not in html


def test_undecodable_search_bytes_do_not_break_the_list(viewer_client):
    ProfileFactory(email="ada@example.com")
    # A lone surrogate, UTF-8 encoded: Django decodes it to U+FFFD.
    response = viewer_client.get("/profiles/", QUERY_STRING="q=%ED%A0%80ada")
    assert response.status_code == 200


def test_the_profile_list_shows_the_total(viewer_client):
    ProfileFactory.create_batch(3)
    html = viewer_client.get("/profiles/").content.decode()
    assert "Profiles 1\N{EN DASH}3 of 3" in html


def test_a_large_profile_list_shows_a_labelled_estimate(viewer_client, settings, monkeypatch):
    ProfileFactory.create_batch(12)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")  # reltuples = 12
    monkeypatch.setattr("vero_admin.pagination.COUNT_CAP", 10)
    monkeypatch.setattr("vero_admin.pagination.table_total.__kwdefaults__", {"cap": 10})
    html = viewer_client.get("/profiles/").content.decode()
    assert "Profiles 1\N{EN DASH}12 of about 12" in html


def test_a_search_with_many_matches_says_more_than_the_cap(viewer_client, monkeypatch):
    ProfileFactory.create_batch(55)
    monkeypatch.setattr("profiles.views.SEARCH_COUNT_CAP", 10)
    html = viewer_client.get("/profiles/", {"q": "example.com"}).content.decode()
    assert "Profiles 1\N{EN DASH}50 of more than 10" in html


def test_a_search_that_fits_one_page_is_not_counted_again(viewer_client):
    ProfileFactory.create_batch(3)
    with CaptureQueriesContext(connection) as queries:
        html = viewer_client.get("/profiles/", {"q": "example.com"}).content.decode()
    assert "Profiles 1\N{EN DASH}3 of 3" in html
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]


def test_the_profile_list_pages_by_keyset(viewer_client):
    ProfileFactory.create_batch(51)
    first = viewer_client.get("/profiles/")
    assert len(PROFILE_LINK.findall(first.content)) == 50
    next_page = first.context["page"].next_query()
    second = viewer_client.get(f"/profiles/?{next_page}")
    assert len(PROFILE_LINK.findall(second.content)) == 1


def test_the_pager_says_where_you_are_and_goes_back(viewer_client):
    profiles = ProfileFactory.create_batch(120)
    first = viewer_client.get("/profiles/")
    assert "Profiles 1\N{EN DASH}50 of 120 · page 1 of 3" in first.content.decode()
    second = viewer_client.get(f"/profiles/?{first.context['page'].next_query()}")
    third = viewer_client.get(f"/profiles/?{second.context['page'].next_query()}")
    html = third.content.decode()
    assert "Profiles 101\N{EN DASH}120 of 120 · page 3 of 3" in html and 'rel="next"' not in html
    back = viewer_client.get(f"/profiles/?{third.context['page'].previous_query()}")
    assert "Profiles 51\N{EN DASH}100 of 120 · page 2 of 3" in back.content.decode()
    assert [p.pk for p in back.context["page"]] == [p.pk for p in profiles[50:100]]
    again = viewer_client.get(f"/profiles/?{back.context['page'].previous_query()}")
    assert [p.pk for p in again.context["page"]] == [p.pk for p in profiles[:50]]


def test_the_pager_keeps_the_search(viewer_client):
    ProfileFactory.create_batch(51, properties={"plan": "growth"})
    first = viewer_client.get("/profiles/", {"q": "growth"})
    assert "q=growth" in first.context["page"].next_query()
    second = viewer_client.get(f"/profiles/?{first.context['page'].next_query()}")
    assert "Profiles 51\N{EN DASH}51 of 51 · page 2 of 2" in second.content.decode()


def test_a_bad_page_cursor_is_refused_with_its_reason(viewer_client):
    ProfileFactory()
    response = viewer_client.get("/profiles/", {"after": "x'; drop"})
    assert response.status_code == 400
    assert "“after” must be a whole number" in response.content.decode()


def test_the_profile_list_requires_view_access(outsider_client, anonymous):
    assert outsider_client.get("/profiles/").status_code == 403
    assert anonymous.get("/profiles/").status_code == 302


def test_the_profile_list_refuses_post(viewer_client):
    assert viewer_client.post("/profiles/").status_code == 405


def test_the_profile_page_shows_everything_about_a_person(viewer_client):
    profile = ProfileFactory(properties={"favourite_colour": "teal"})
    EventFactory(profile=profile, name="signed_in")
    SubscriptionPreferenceFactory(profile=profile, topic="product_updates")
    MessageActivityFactory(message__profile=profile, message__campaign__name="Big launch")
    response = viewer_client.get(f"/profiles/{profile.pk}/")
    assert response.status_code == 200
    for text in (b"teal", b"signed_in", b"product_updates", b"Big launch"):
        assert text in response.content


def test_an_unknown_profile_is_404(viewer_client):
    assert viewer_client.get("/profiles/999999/").status_code == 404


def test_the_profile_page_requires_view_access(outsider_client, anonymous):
    assert outsider_client.get(f"/profiles/{ProfileFactory().pk}/").status_code == 403
    assert anonymous.get(f"/profiles/{ProfileFactory().pk}/").status_code == 302


def test_properties_read_as_key_value_lists_not_python(viewer_client):
    profile = ProfileFactory(
        properties={"address": {"city": "Oslo", "items": [1, 2]}, "vip": True, "0": "zero"}
    )
    EventFactory(profile=profile, properties={"source": "web", "cart": [{"sku": "T-1"}]})
    html = viewer_client.get(f"/profiles/{profile.pk}/").content.decode()
    main = html[html.index("<main") :]
    assert "&#x27;" not in main and "[{" not in main and "True" not in main
    assert "<dt>source</dt><dd>web</dd>" in html
    assert "<dt>sku</dt><dd>T-1</dd>" in html
    assert "<dt>city</dt><dd>Oslo</dd>" in html and "<dt>items</dt><dd>1, 2</dd>" in html
    assert "<dt>0</dt><dd>zero</dd>" in html and "<dt>vip</dt><dd>yes</dd>" in html


@pytest.mark.parametrize("name", ["items", "keys", "values", "get", "key", "children"])
def test_an_attribute_named_like_a_dict_method_is_shown_as_data(viewer_client, name):
    """The template iterates rows built in the view: a key named ``items``
    cannot stand in for the dict's method (spoofing the list, or a 500)."""
    spoof = {"spoofed": "by the attacker"}
    profile = ProfileFactory(properties={name: spoof, "plan": "trial"})
    EventFactory(profile=profile, properties={name: "x", "source": "web"})
    for url in (f"/profiles/{profile.pk}/", f"/profiles/{profile.pk}/events/"):
        response = viewer_client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert f"<dt>{name}</dt>" in html and "<dt>source</dt><dd>web</dd>" in html
    html = viewer_client.get(f"/profiles/{profile.pk}/").content.decode()
    assert "<dt>plan</dt><dd>trial</dd>" in html
    assert "<dt>spoofed</dt><dd>by the attacker</dd>" in html  # nested under its key


def test_recent_events_says_it_shows_the_latest_50_and_links_to_the_rest(viewer_client):
    profile = ProfileFactory()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(53):
        EventFactory(profile=profile, name=f"event-{i}", occurred_at=start + timedelta(hours=i))
    html = viewer_client.get(f"/profiles/{profile.pk}/").content.decode()
    assert "The latest 50 of 53 events, newest first." in html
    assert "event-52" in html and "event-2<" not in html
    older = re.search(r'href="(/profiles/\d+/events/\?[^"]+)" rel="next"', html)[1]
    rest = viewer_client.get(older.replace("&amp;", "&"))
    assert [event.name for event, _ in rest.context["page"]] == ["event-2", "event-1", "event-0"]
    assert "Events 51\N{EN DASH}53 of 53 · page 2 of 2" in rest.content.decode()


def test_the_profile_page_lists_the_persons_segments_with_links(viewer_client):
    profile = ProfileFactory()
    segment = SegmentFactory(name="Trial users")
    SegmentMembershipFactory(profile=profile, segment=segment)
    html = viewer_client.get(f"/profiles/{profile.pk}/").content.decode()
    assert f'<a href="/segments/{segment.pk}/">Trial users</a>' in html


def test_dates_on_the_profile_page_have_one_format_with_the_time_zone(viewer_client):
    profile = ProfileFactory()
    EventFactory(profile=profile, occurred_at=datetime(2026, 11, 29, 14, 5, tzinfo=UTC))
    html = viewer_client.get(f"/profiles/{profile.pk}/").content.decode()
    assert '<time datetime="2026-11-29T14:05:00+00:00">29 Nov 2026, 14:05 UTC</time>' in html


# All events ---------------------------------------------------------------------


def test_all_events_are_paged_newest_first(viewer_client):
    profile = ProfileFactory()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(51):
        EventFactory(profile=profile, name=f"event-{i}", occurred_at=start + timedelta(days=i))
    first = viewer_client.get(f"/profiles/{profile.pk}/events/")
    assert first.status_code == 200
    html = first.content.decode()
    assert "Events 1\N{EN DASH}50 of 51 · page 1 of 2" in html and "event-50" in html
    second = viewer_client.get(
        f"/profiles/{profile.pk}/events/?{first.context['page'].next_query()}"
    )
    assert [event.name for event, _ in second.context["page"]] == ["event-0"]


@pytest.mark.parametrize(
    "older", ["nonsense", "2026-01-01~x", "2026-01-01T00:00:00~1", "~", "9" * 50]
)
def test_a_bad_events_cursor_is_refused_with_its_reason(viewer_client, older):
    profile = ProfileFactory()
    EventFactory(profile=profile)
    response = viewer_client.get(f"/profiles/{profile.pk}/events/", {"older": older})
    assert response.status_code == 400
    assert "“older” is not a position" in response.content.decode()


def test_all_events_require_view_access(outsider_client, anonymous):
    url = f"/profiles/{ProfileFactory().pk}/events/"
    assert outsider_client.get(url).status_code == 403
    assert anonymous.get(url).status_code == 302


def test_all_events_of_an_unknown_profile_is_404(viewer_client):
    assert viewer_client.get("/profiles/999999/events/").status_code == 404


def test_all_events_refuse_post(viewer_client):
    profile = ProfileFactory()
    EventFactory(profile=profile)
    assert viewer_client.post(f"/profiles/{profile.pk}/events/").status_code == 405
    assert Event.objects.count() == 1


def test_the_profile_page_refuses_post(viewer_client):
    assert viewer_client.post(f"/profiles/{ProfileFactory().pk}/").status_code == 405


def test_user_supplied_text_is_escaped(viewer_client):
    profile = ProfileFactory(properties={"bio": "<script>alert(1)</script>"})
    html = viewer_client.get(f"/profiles/{profile.pk}/").content
    assert b"<script>alert(1)</script>" not in html
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in html
