"""User-supplied text is shown as text, wherever the dashboard shows it."""

import re
from pathlib import Path

import pytest

from messaging.models import Campaign
from segments.deletion import services as deletion
from segments.deletion.selectors import segment_membership_token
from segments.models import DeletionJob
from tests.messaging.factories import CampaignFactory, MessageFactory
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
SCRIPT_AS_TEXT = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMAGE = '<img src=x onerror="alert(2)">'


@pytest.fixture
def segment():
    segment = SegmentFactory(name=SCRIPT, description=IMAGE, member_count=1)
    profile = ProfileFactory(
        user_id=IMAGE, properties={SCRIPT: IMAGE, "plan": SCRIPT}, tags=[SCRIPT]
    )
    EventFactory(profile=profile, name=SCRIPT, properties={"page": IMAGE})
    SegmentMembershipFactory(segment=segment, profile=profile)
    MessageFactory(campaign=CampaignFactory(name=SCRIPT, audience=segment), profile=profile)
    return segment


def assert_shown_as_text(response):
    assert response.status_code == 200
    html = response.content.decode()
    assert SCRIPT not in html and IMAGE not in html
    assert SCRIPT_AS_TEXT in html
    return html


def test_a_segment_name_is_text_on_the_list(editor_client, segment):
    assert_shown_as_text(editor_client.get("/segments/"))


def test_a_search_for_markup_is_text(editor_client, segment):
    assert_shown_as_text(editor_client.get("/segments/", {"q": SCRIPT}))
    assert_shown_as_text(editor_client.get("/segments/", {"q": SCRIPT + "x"}))


@pytest.mark.parametrize("page", ["", "edit/", "delete/", "delete-profiles/"])
def test_a_segment_name_is_text_on_its_pages(editor_client, segment, page):
    assert_shown_as_text(editor_client.get(f"/segments/{segment.pk}/{page}"))


def test_the_deletion_dialog_asks_for_the_name_as_text(editor_client, segment):
    html = assert_shown_as_text(
        editor_client.get(f"/segments/{segment.pk}/delete-profiles/", headers={"HX-Request": "1"})
    )
    assert f'data-confirm-match="{SCRIPT_AS_TEXT}"' in html


def test_a_segment_named_with_markup_can_still_be_confirmed_by_typing_it(editor_client, segment):
    response = editor_client.post(
        f"/segments/{segment.pk}/delete-profiles/",
        {
            "typed_name": SCRIPT,
            "expected_count": 1,
            "membership_token": segment_membership_token(segment),
        },
    )
    assert response.status_code == 302
    job = DeletionJob.objects.get()
    assert job.segment_name == SCRIPT and job.total == 1
    # The flash message and the progress panel show the name as text too.
    assert_shown_as_text(editor_client.get(f"/segments/{segment.pk}/"))
    deletion.deletion_run(job_id=job.pk, slice_seconds=10)
    assert_shown_as_text(editor_client.get(f"/segments/{segment.pk}/"))
    progress = editor_client.get(f"/segments/{segment.pk}/deletions/{job.pk}/progress/")
    assert progress.status_code == 200 and SCRIPT not in progress.content.decode()


def test_profile_attributes_and_event_names_are_text(editor_client, segment):
    profile = segment.memberships.get().profile
    html = assert_shown_as_text(editor_client.get(f"/profiles/{profile.pk}/"))
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert_shown_as_text(editor_client.get("/profiles/", {"q": SCRIPT}))


def test_campaign_names_are_text(editor_client, segment):
    campaign = Campaign.objects.get(audience__segment=segment)
    assert_shown_as_text(editor_client.get("/campaigns/"))
    assert_shown_as_text(editor_client.get(f"/campaigns/{campaign.pk}/"))


DICT_ITERATION = re.compile(r"\{%\s*for\s[^%]*\sin\s+([\w.]+\.(items|keys|values))\s*%\}")
# Lists a view built under a key of that name, not a dict's method.
BUILT_LISTS = {"member.values"}  # segments.counting._sample


def test_no_template_iterates_a_dict_of_user_data():
    """A template reads ``x.items`` as the key "items" before the method: a
    profile attribute named so would spoof the list. Views hand templates
    lists of rows instead (profiles.views.readable)."""
    from django.conf import settings

    found = []
    for directory in settings.TEMPLATES[0]["DIRS"]:
        for path in Path(directory).rglob("*.html"):
            found += [
                f"{path}: {m[0]}"
                for m in DICT_ITERATION.finditer(path.read_text())
                if m[1] not in BUILT_LISTS
            ]
    assert not found, found
