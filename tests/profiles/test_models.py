import pytest
from django.db import IntegrityError, transaction

from profiles.models import Profile, SubscriptionPreference
from tests.profiles.factories import ProfileFactory, SubscriptionPreferenceFactory

pytestmark = pytest.mark.django_db


def test_a_new_profile_is_subscribed_by_default():
    assert Profile.objects.create(email="new@example.com").subscribed is True


def test_user_id_is_unique_where_present():
    ProfileFactory(user_id="42")
    with pytest.raises(IntegrityError), transaction.atomic():
        ProfileFactory(user_id="42")


def test_many_profiles_may_have_no_user_id():
    ProfileFactory(user_id=None, email="a@example.com")
    ProfileFactory(user_id=None, email="b@example.com")
    assert Profile.objects.filter(user_id__isnull=True).count() == 2


def test_a_profile_needs_a_user_id_or_an_email():
    with pytest.raises(IntegrityError), transaction.atomic():
        Profile.objects.create(user_id=None, email="")


def test_one_preference_per_profile_and_topic():
    pref = SubscriptionPreferenceFactory(topic="newsletter")
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionPreference.objects.create(
            profile=pref.profile, topic="newsletter", changed_at=pref.changed_at
        )
