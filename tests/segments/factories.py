import factory
from django.utils import timezone

from segments.models import Segment, SegmentMembership
from tests.profiles.factories import ProfileFactory


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    description = "A test segment"
    rules = factory.LazyFunction(
        lambda: {"match": "all", "conditions": [{"type": "subscription", "status": "subscribed"}]}
    )
    last_refreshed_at = factory.LazyFunction(timezone.now)
    member_count = 0


class SegmentMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SegmentMembership

    segment = factory.SubFactory(SegmentFactory)
    profile = factory.SubFactory(ProfileFactory)
