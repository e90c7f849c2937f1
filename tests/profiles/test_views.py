import re

import pytest

from tests.messaging.factories import MessageActivityFactory
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory

pytestmark = pytest.mark.django_db


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


def test_the_profile_list_pages_by_keyset(viewer_client):
    ProfileFactory.create_batch(51)
    first = viewer_client.get("/profiles/")
    profile_link = re.compile(rb'href="/profiles/\d+/"')
    assert len(profile_link.findall(first.content)) == 50
    next_page = first.context["page"].next_query()
    second = viewer_client.get(f"/profiles/?{next_page}")
    assert len(profile_link.findall(second.content)) == 1


def test_a_bad_page_cursor_shows_the_first_page(viewer_client):
    ProfileFactory()
    assert viewer_client.get("/profiles/", {"after": "x'; drop"}).status_code == 200


def test_the_profile_list_requires_view_access(outsider_client):
    assert outsider_client.get("/profiles/").status_code == 403


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


def test_the_profile_page_requires_view_access(outsider_client):
    assert outsider_client.get(f"/profiles/{ProfileFactory().pk}/").status_code == 403


def test_the_profile_page_refuses_post(viewer_client):
    assert viewer_client.post(f"/profiles/{ProfileFactory().pk}/").status_code == 405


def test_user_supplied_text_is_escaped(viewer_client):
    profile = ProfileFactory(properties={"bio": "<script>alert(1)</script>"})
    html = viewer_client.get(f"/profiles/{profile.pk}/").content
    assert b"<script>alert(1)</script>" not in html
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in html
