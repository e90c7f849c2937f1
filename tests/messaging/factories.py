import factory
from django.utils import timezone

from messaging.models import Campaign, Message, MessageActivity
from tests.profiles.factories import ProfileFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = "Hello"
    sent_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    campaign = factory.SubFactory(CampaignFactory)
    profile = factory.SubFactory(ProfileFactory)
    recipient_email = factory.LazyAttribute(lambda m: m.profile.email)
    sent_at = factory.LazyFunction(timezone.now)


class MessageActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MessageActivity

    message = factory.SubFactory(MessageFactory)
    profile = factory.LazyAttribute(lambda a: a.message.profile)
    kind = MessageActivity.OPEN
    occurred_at = factory.LazyFunction(timezone.now)
    ip_address = "198.51.100.7"
    user_agent = "Mozilla/5.0 (test)"
