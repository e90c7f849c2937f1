"""On a phone (390 px wide): the top bar keeps every link and the account
on the dark bar (readable, nothing clipped), and a table wider than the
screen scrolls inside a named region that a keyboard user can scroll.

Every page's width at 390 px is checked in test_accessibility.py."""

import pytest

from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": PHONE}


def box(locator):
    return locator.bounding_box()


@pytest.mark.parametrize("width", [390, 640])
def test_every_top_bar_item_is_on_the_screen_and_on_the_bar(live_server, login, width):
    from tests.conftest import _user

    # The longest bar: a long name, and the Admin link.
    page = login(_user("alexandra.montgomery", "Editors", is_staff=True))
    page.wait_for_url("**/segments/")
    page.set_viewport_size({"width": width, "height": 844})
    bar = box(page.locator("header.topbar"))
    items = [
        page.get_by_role("link", name="vero_admin"),
        page.get_by_text("alexandra.montgomery", exact=True),
        page.get_by_role("button", name="Log out"),
        *page.get_by_role("navigation", name="Main").get_by_role("link").all(),
    ]
    assert len(items) == 8
    for item in items:
        b = box(item)
        assert b["x"] >= 0 and b["x"] + b["width"] <= width, item
        assert b["y"] >= bar["y"] and b["y"] + b["height"] <= bar["y"] + bar["height"], item


def test_a_wide_table_scrolls_in_its_own_region_with_the_keyboard(live_server, login, alice):
    population = build_population(doomed=3, survivors=0, events_each=0)
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    region = page.get_by_role("region", name="Members table")
    region.wait_for()
    assert region.get_attribute("tabindex") == "0"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert region.evaluate("r => r.scrollWidth > r.clientWidth")
    region.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.activeElement.scrollLeft > 0")


def test_a_table_that_fits_is_not_an_extra_tab_stop(live_server, login, alice):
    population = build_population(doomed=1, survivors=0, events_each=0)
    page = login(alice)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    region = page.get_by_role("region", name="Members table")
    region.wait_for()
    assert region.get_attribute("tabindex") is None
