"""Every POST form the dashboard renders carries a CSRF token, and posting
the form as rendered (token and cookie, as a browser would) is accepted.

test_url_security shows that a POST *without* a token is refused; this shows
the other half: a form that lost its ``{% csrf_token %}`` would be refused
for everyone, and fails here first.
"""

from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from segments.deletion.services import deletion_start
from segments.models import DeletionJob
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db


class _Forms(HTMLParser):
    """The POST forms of a page: their action and the hidden inputs inside."""

    def __init__(self):
        super().__init__()
        self.forms, self._open = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "get").lower() == "post":
            self._open = {"action": attrs.get("action") or "", "fields": {}}
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attrs.get("name"):
            self._open["fields"][attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def post_forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@pytest.fixture
def pages(alice):
    """Pages in states that show every POST form: the segment page with a
    running job (stop), one with a stopped job (resume, close), the dialog
    and its no-JavaScript page, the segment form and its delete page."""
    running = build_population(doomed=2, survivors=1, events_each=0, name="Running")
    job = deletion_start(
        segment=running.segment, user=alice, typed_name="Running", expected_count=2
    ).job
    DeletionJob.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    stopped = build_population(doomed=2, survivors=1, events_each=0, name="Stopped")
    old = deletion_start(
        segment=stopped.segment, user=alice, typed_name="Stopped", expected_count=2
    ).job
    DeletionJob.objects.filter(pk=old.pk).update(status="failed", deleted=1)
    fresh = build_population(doomed=2, survivors=1, events_each=0, name="Fresh")
    return [
        (f"/segments/{running.segment.pk}/", {}),
        (f"/segments/{stopped.segment.pk}/", {}),
        (f"/segments/{fresh.segment.pk}/delete-profiles/", {"HX-Request": "true"}),
        (f"/segments/{fresh.segment.pk}/delete-profiles/", {}),
        (f"/segments/{fresh.segment.pk}/edit/", {}),
        (f"/segments/{fresh.segment.pk}/delete/", {}),
        ("/segments/new/", {}),
    ]


def test_every_post_form_carries_a_csrf_token_and_is_accepted_with_it(alice, pages):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    seen = set()
    for url, headers in pages:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        for form in post_forms(response.content.decode()):
            action = form["action"] or url
            assert form["fields"].get("csrfmiddlewaretoken"), (url, action)
            seen.add(action.split("/")[-2])
            if action.endswith("/logout/"):
                continue  # posted last, so the others stay logged in
            # Only the token travels: this proves CSRF accepts the form as
            # rendered, without starting anything a test did not mean to.
            answer = client.post(
                action, {"csrfmiddlewaretoken": form["fields"]["csrfmiddlewaretoken"]}
            )
            assert answer.status_code != 403, (url, action, answer.status_code)
    assert {"cancel", "resume", "close", "delete-profiles", "refresh", "logout"} <= seen
    (logout,) = post_forms(client.get("/segments/").content.decode())
    answer = client.post(logout["action"], logout["fields"])
    assert answer.status_code == 302


def test_the_check_notices_a_form_without_a_token():
    html = '<form method="post" action="/x/"><input name="typed_name" value=""></form>'
    assert post_forms(html) == [{"action": "/x/", "fields": {"typed_name": ""}}]
