import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from messaging.models import Campaign, Message, MessageActivity
from profiles.models import Event, Profile, SubscriptionPreference
from segments.models import Segment

pytestmark = pytest.mark.django_db


def seed(**options):
    call_command("seed_demo", profiles=200, events_per_profile=3, no_refresh=True, **options)


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


def test_demo_profiles_look_real():
    call_command("seed_demo", profiles=50, no_users=True, no_refresh=True)
    profile = Profile.objects.order_by("id").first()
    assert "@" in profile.email and profile.user_id == "u1"
    assert {"first_name", "country", "plan"} <= set(profile.properties)
    assert 10 <= profile.events.count() <= 50
