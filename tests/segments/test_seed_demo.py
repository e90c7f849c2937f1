import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import F
from django.utils import timezone

from messaging.models import AudienceSegment, Campaign, Message, MessageActivity
from messaging.selectors import campaign_reach
from profiles.models import Event, Profile, SubscriptionPreference
from segments.models import Segment, SegmentMembership
from segments.rules import rules_matching_profiles

pytestmark = pytest.mark.django_db


def seed(**options):
    call_command("seed_demo", profiles=200, events_per_profile=3, **options)


def test_seed_demo_fills_every_table(settings):
    settings.DEBUG = True
    seed()
    assert Profile.objects.count() == 200
    assert Event.objects.count() == 600
    assert SubscriptionPreference.objects.exists()
    assert Segment.objects.filter(name="Trial users in Germany").exists()
    assert Campaign.objects.count() == 7
    assert Message.objects.exists() and MessageActivity.objects.exists()
    editor = User.objects.get(username="editor")
    assert editor.check_password("demo")
    assert editor.groups.filter(name="Editors").exists()
    assert User.objects.get(username="admin").is_superuser


def test_seed_demo_twice_duplicates_nothing(settings):
    settings.DEBUG = True
    seed()
    counts = [m.objects.count() for m in (Profile, Event, Segment, Campaign, Message, User)]
    seed()
    assert [m.objects.count() for m in (Profile, Event, Segment, Campaign, Message, User)] == counts


def test_seed_demo_refuses_demo_logins_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="refuses"):
        seed()
    assert not User.objects.exists()
    assert not Profile.objects.exists()


def test_seed_demo_refreshes_every_demo_segment():
    call_command("seed_demo", profiles=300, no_users=True)
    segments = Segment.objects.all()
    assert len(segments) >= 6
    for segment in segments:
        members = set(
            SegmentMembership.objects.filter(segment=segment).values_list("profile_id", flat=True)
        )
        assert segment.last_refreshed_at is not None, segment.name
        assert segment.member_count == len(members), segment.name
        assert members == set(rules_matching_profiles(segment.rules).values_list("id", flat=True))


def test_the_demo_segments_are_meaningful():
    """Each one picks out some people, and nobody picks out everyone."""
    call_command("seed_demo", profiles=1000, no_users=True)
    total = Profile.objects.count()
    # Empty on purpose: the demo's people signed up within the last 900 days,
    # so its paused retention schedule's dry run shows nobody to delete yet.
    for segment in Segment.objects.exclude(name="Inactive for 3 years"):
        assert 0 < segment.member_count < total, (segment.name, segment.member_count)
    unsubscribed = Segment.objects.get(name="Unsubscribed")
    assert unsubscribed.member_count == Profile.objects.filter(subscribed=False).count()


def test_seed_demo_can_leave_segments_unrefreshed():
    call_command("seed_demo", profiles=20, no_users=True, no_refresh=True)
    assert not SegmentMembership.objects.exists()
    assert not Segment.objects.filter(last_refreshed_at__isnull=False).exists()


def test_demo_profiles_look_real():
    call_command("seed_demo", profiles=50, no_users=True, no_refresh=True)
    profile = Profile.objects.order_by("id").first()
    assert "@" in profile.email and profile.user_id == "u1"
    assert {"first_name", "country", "plan"} <= set(profile.properties)
    assert 10 <= profile.events.count() <= 50


def _demo_state() -> dict:
    """Everything a start of `make run` could change: memberships, counts,
    refresh times, campaigns and their sends, logins."""
    return {
        "memberships": sorted(SegmentMembership.objects.values_list("segment_id", "profile_id")),
        "segments": sorted(
            Segment.objects.values_list("pk", "name", "member_count", "last_refreshed_at")
        ),
        "profiles": sorted(Profile.objects.values_list("pk", "properties", "subscribed")),
        "campaigns": sorted(Campaign.objects.values_list("pk", "name", "sent_at")),
        "messages": Message.objects.count(),
        "users": sorted(User.objects.values_list("username", "password", "is_superuser")),
    }


def test_a_second_seed_demo_changes_no_data(settings):
    """`make run` runs seed_demo at every start: after the first, a start must
    not refresh a segment (a refresh during a deletion would drop members)."""
    settings.DEBUG = True
    seed()
    segment = Segment.objects.get(name="Unsubscribed")
    # A member the rules would no longer pick, as after a deletion or an edit:
    # only an explicit refresh may take it away.
    kept = Profile.objects.filter(subscribed=True).first()
    SegmentMembership.objects.create(segment=segment, profile=kept)
    before = _demo_state()
    seed()
    assert _demo_state() == before


# The demo tells one consistent story -----------------------------------------


@pytest.fixture
def demo(settings):
    settings.DEBUG = True
    call_command("seed_demo", profiles=1500, no_users=True)


def test_every_send_went_to_someone_in_the_campaigns_audience(demo):
    """A campaign aimed at an 81-person segment cannot show 714 sends."""
    for campaign in Campaign.objects.filter(status=Campaign.Status.SENT):
        audience = AudienceSegment.objects.filter(campaign=campaign)
        included = audience.filter(mode="include").values("segment_id")
        excluded = audience.filter(mode="exclude").values("segment_id")
        members = SegmentMembership.objects.filter(segment_id__in=included)
        outsiders = Message.objects.filter(campaign=campaign).exclude(
            profile_id__in=members.values("profile_id")
        )
        assert not outsiders.exists(), campaign.name
        assert not Message.objects.filter(
            campaign=campaign,
            profile_id__in=SegmentMembership.objects.filter(segment_id__in=excluded).values(
                "profile_id"
            ),
        ).exists(), campaign.name
        sends = campaign.messages.count()
        assert 0 < sends <= campaign_reach(campaign=campaign), campaign.name


def test_messages_go_out_when_their_campaign_was_sent(demo):
    sent = Campaign.objects.filter(status=Campaign.Status.SENT)
    assert sent.count() == 4
    for campaign in sent:
        assert campaign.created_at < campaign.sent_at < timezone.now(), campaign.name
        times = campaign.messages.values_list("sent_at", flat=True)
        assert min(times) >= campaign.sent_at, campaign.name
        assert max(times) - campaign.sent_at < timezone.timedelta(hours=1), campaign.name
    assert not Message.objects.filter(profile__created_at__gt=F("sent_at")).exists()
    assert not MessageActivity.objects.filter(occurred_at__lt=F("message__sent_at")).exists()
    assert not MessageActivity.objects.filter(occurred_at__gt=timezone.now()).exists()


def test_unsent_campaigns_have_an_audience_and_no_sends(demo):
    unsent = Campaign.objects.exclude(status=Campaign.Status.SENT)
    assert {c.status for c in unsent} == {"draft", "scheduled"}
    for campaign in unsent:
        assert campaign.sent_at is None and not campaign.messages.exists(), campaign.name
        assert campaign.audience.filter(mode="include").exists(), campaign.name
        assert campaign_reach(campaign=campaign) > 0, campaign.name
    assert all(c.scheduled_for > timezone.now() for c in unsent.filter(status="scheduled"))


def test_nobody_acts_before_signing_up_or_in_the_future(demo):
    """A profile created two days ago cannot have its last event three weeks ago."""
    now = timezone.now()
    assert not Event.objects.filter(occurred_at__lt=F("profile__created_at")).exists()
    assert not Event.objects.filter(occurred_at__gt=now).exists()
    assert not Profile.objects.filter(unsubscribed_at__gt=now).exists()
    assert not Profile.objects.filter(unsubscribed_at__lt=F("created_at")).exists()
    assert not SubscriptionPreference.objects.filter(changed_at__gt=now).exists()
    assert not SubscriptionPreference.objects.filter(
        changed_at__lt=F("profile__created_at")
    ).exists()
    # New people are in the demo too, with their events since they signed up.
    recent = Profile.objects.filter(created_at__gt=now - timezone.timedelta(days=7))
    assert recent.exists() and Event.objects.filter(profile__in=recent).exists()
