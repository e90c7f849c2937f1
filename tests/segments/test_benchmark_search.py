"""The search benchmark runs at a tiny size and prints its table. Its
timings are figures for people, never assertions here."""

import io
import re

import pytest
from django.core.management import call_command

from profiles.demo_data import insert_events, insert_profiles
from segments.models import Segment

pytestmark = pytest.mark.django_db


def test_the_search_benchmark_prints_a_median_and_range_per_query_and_search():
    insert_profiles(count=200, start=1)
    insert_events(min_id=1, max_id=200, per_profile=1)
    out = io.StringIO()
    call_command("benchmark_search", current=True, runs=2, stdout=out)
    text = out.getvalue()
    assert "200 profiles; members: “Benchmark: search members”, 100; 2 runs each" in text
    header = next(line for line in text.splitlines() if line.startswith("query"))
    for variant in ("members", "members, old prefix", "profiles", "profiles, old prefix"):
        assert variant in header
    for label in (
        "part of an email",
        "part of a user id",
        "attribute value (last name)",
        "miss",
        "3 characters",
        "2 characters (exact only)",
    ):
        row = next(line for line in text.splitlines() if line.startswith(label))
        assert len(re.findall(r"[\d.,]+ \([\d.,]+-[\d.,]+\) \[\d+\]", row)) == 4, row
    miss = next(line for line in text.splitlines() if line.startswith("miss"))
    assert miss.count("[0]") == 4
    # --current leaves the database as it found it.
    assert not Segment.objects.filter(name="Benchmark: search members").exists()
