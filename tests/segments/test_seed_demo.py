import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from messaging.models import Campaign, Message, MessageActivity
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
    assert Campaign.objects.count() == 4
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
    for segment in Segment.objects.all():
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
