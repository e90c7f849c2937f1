import factory
from django.utils import timezone

from messaging.models import AudienceSegment, Campaign, Message, MessageActivity
from tests.profiles.factories import ProfileFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = "Hello"
    status = Campaign.Status.SENT
    sent_at = factory.LazyAttribute(
        lambda c: timezone.now() if c.status == Campaign.Status.SENT else None
    )

    @factory.post_generation
    def audience(campaign, create, segment, **kwargs):
        """``CampaignFactory(audience=segment)``: the segment is included."""
        if segment is not None:
            AudienceSegment.objects.create(
                campaign=campaign, segment=segment, mode=AudienceSegment.Mode.INCLUDE
            )

    @factory.post_generation
    def excluded(campaign, create, segments, **kwargs):
        for segment in segments or []:
            AudienceSegment.objects.create(
                campaign=campaign, segment=segment, mode=AudienceSegment.Mode.EXCLUDE
            )


def draft_campaign(**kwargs):
    return CampaignFactory(status=Campaign.Status.DRAFT, **kwargs)


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
