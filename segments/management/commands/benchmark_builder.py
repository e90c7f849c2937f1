"""Time what the segment builder asks of the database, on the current database.

- the pickers: reading the catalogue of attribute names (sampled), event
  names and topics (loose index scans), uncached, and then from the cache;
- the live counts: for a few typical rules, what one count request does
  (every row alone and the whole in one statement, under the statement
  timeout, falling back to an estimate), and the sample of members.

Each is repeated ``--runs`` times; the command prints p50 / p95 / max, and for
counts how many answers were exact and how far the estimates were from the
exact figure (counted once, without a timeout). Run it against a database
seeded with ``seed_demo --profiles N --events-per-profile 10`` (DATABASE_URL=...).
"""

import statistics
import time

from django.core.cache import cache
from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone

from profiles.models import Profile
from segments import catalogue as catalogue_module
from segments.builder import builder_from_rules
from segments.catalogue import catalogue_build, catalogue_get
from segments.counting import builder_preview, rules_counts
from segments.rules import rules_compile


def _property(name, operator, value):
    return {"type": "property", "field": name, "operator": operator, "value": value}


RULES = {
    "plan is trial": {"match": "all", "conditions": [_property("plan", "equals", "trial")]},
    "trial, FR or ES, no purchase in 30 days": {
        "match": "all",
        "conditions": [
            _property("plan", "equals", "trial"),
            {
                "match": "any",
                "conditions": [
                    _property("country", "equals", "FR"),
                    _property("country", "equals", "ES"),
                ],
            },
            {"type": "event", "event": "purchase", "operator": "not_done", "within_days": 30},
        ],
    },
    "purchase at least 3 times in 60 days": {
        "match": "all",
        "conditions": [
            {
                "type": "event",
                "event": "purchase",
                "operator": "at_least",
                "count": 3,
                "within_days": 60,
            }
        ],
    },
    "newsletter opt-in and age over 40": {
        "match": "all",
        "conditions": [
            {"type": "subscription", "status": "subscribed", "topic": "newsletter"},
            _property("age", "gt", 40),
        ],
    },
    "email contains @example.": {
        "match": "all",
        "conditions": [_property("email", "contains", "@example.")],
    },
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {_ms(statistics.median(ordered))}  p95 {_ms(p95)}  max {_ms(ordered[-1])}"


def _timed(function, runs: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return times, result


class Command(BaseCommand):
    help = "Time the segment builder's pickers and live counts (p50 / p95)."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=20, help="Repetitions of each (20).")

    def handle(self, *args, runs: int, **options):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM profiles_event")
            events = cursor.fetchone()[0]
        self.stdout.write(
            f"{Profile.objects.count():,} profiles, {events:,} events; {runs} runs each"
        )

        self.stdout.write("\nPickers")
        for label, read in [
            ("attribute names (sampled)", catalogue_module._attributes),
            ("event names", lambda: catalogue_module._distinct("profiles_event", "name")),
            (
                "topics",
                lambda: catalogue_module._distinct("profiles_subscriptionpreference", "topic"),
            ),
            ("all three, uncached", catalogue_build),
        ]:
            times, found = _timed(read, runs)
            size = len(found.attributes) if hasattr(found, "attributes") else len(found)
            self.stdout.write(f"  {label:<32} {_summary(times)}  ({size} names)")
        cache.delete(catalogue_module.CACHE_KEY)
        catalogue_get()
        times, _ = _timed(catalogue_get, runs)
        self.stdout.write(f"  {'all three, cached':<32} {_summary(times)}")

        self.stdout.write(
            "\nCounts (each row alone and the whole, one statement, as the builder asks)"
        )
        now = timezone.now()
        for label, rules in RULES.items():
            builder = builder_from_rules(rules)
            truth = Profile.objects.filter(rules_compile(rules, now=now)).count()
            parts = {
                row.prefix: {"match": "all", "conditions": [row.condition]}
                for row in builder.all_rows()
            }
            parts["total"] = rules
            times, counts = [], []
            for _ in range(runs):
                started = time.perf_counter()
                counts.append(rules_counts(parts, now=now)["total"])
                times.append(time.perf_counter() - started)
            exact = sum(1 for count in counts if count.exact)
            estimates = [c.value for c in counts if not c.exact and c.value is not None]
            unknown = sum(1 for c in counts if c.value is None)
            off = (
                f", estimates {min(estimates):,}-{max(estimates):,}"
                f" ({(statistics.median(estimates) - truth) / max(truth, 1):+.1%})"
                if estimates
                else ""
            )
            self.stdout.write(
                f"  {label:<42} {_summary(times)}  members {truth:,}; "
                f"{exact}/{runs} exact{off}{f', {unknown} not known' if unknown else ''}"
            )
            times, _ = _timed(lambda builder=builder: builder_preview(builder), max(3, runs // 4))
            self.stdout.write(f"  {'':<42} whole request (counts + sample): {_summary(times)}")
