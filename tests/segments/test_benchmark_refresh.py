import pytest
from django.core.management import call_command

from profiles.models import Event
from segments.models import Segment, SegmentMembership

# The ingestion beside the refresh writes through its own connection, so the
# data must be committed for it to see.
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_benchmark_times_every_segment_with_ingestion_beside_it(capsys):
    call_command("seed_demo", profiles=300, events_per_profile=5, no_users=True, no_refresh=True)
    call_command("benchmark_refresh", everyone=True)
    out = capsys.readouterr().out
    assert "300 profiles" in out and "lock waits" in out
    everyone = Segment.objects.get(name="Benchmark: everyone")
    assert everyone.member_count == 300
    assert SegmentMembership.objects.filter(segment=everyone).count() == 300
    for segment in Segment.objects.all():
        assert segment.name[:32] in out
    assert not Event.objects.filter(name="benchmark_ping").exists()
