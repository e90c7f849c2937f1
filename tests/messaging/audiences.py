"""Segments with known members, for audience tests."""

from segments.models import SegmentMembership
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory


def segment_of(people, *, name=None):
    """A segment whose members are exactly ``people`` (profiles)."""
    segment = SegmentFactory(member_count=len(people), **({"name": name} if name else {}))
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=segment, profile=person) for person in people
    )
    return segment


def people(n):
    return ProfileFactory.create_batch(n)
