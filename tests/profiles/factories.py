import factory
from django.utils import timezone

from profiles.models import Event, Profile, SubscriptionPreference


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    user_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    properties = factory.LazyFunction(lambda: {"plan": "starter", "country": "DE"})


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    profile = factory.SubFactory(ProfileFactory)
    name = "page_viewed"
    properties = factory.LazyFunction(lambda: {"source": "web"})
    occurred_at = factory.LazyFunction(timezone.now)


class SubscriptionPreferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubscriptionPreference

    profile = factory.SubFactory(ProfileFactory)
    topic = "newsletter"
    subscribed = True
    changed_at = factory.LazyFunction(timezone.now)
