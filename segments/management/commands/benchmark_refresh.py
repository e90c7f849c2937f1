"""Time segment refreshes on the current database, with ingestion running beside them.

For each segment: a first refresh from an empty membership (everyone joins),
then a refresh with nothing changed. Meanwhile another connection keeps
inserting events for the segment's profiles and updating their attributes,
as the ingestion API does, and reports how long its slowest write took: the
refresh must not make it wait.

Run it on a database of its own (DATABASE_URL=...), seeded with
``seed_demo --profiles N``: it rewrites the memberships it measures.
"""

import statistics
import threading
import time

from django.core.management.base import BaseCommand
from django.db import OperationalError, connection, connections
from django.utils import timezone

from profiles.models import Event, Profile
from segments.models import Segment, SegmentMembership
from segments.services import segment_refresh

EVERYONE = "Benchmark: everyone"


class Ingestion(threading.Thread):
    """Writes what ingestion writes, one autocommit statement at a time.

    With a lock timeout: a write that waits for a lock longer than
    LOCK_TIMEOUT_MS fails, and is counted, instead of just being slow.
    """

    LOCK_TIMEOUT_MS = 100

    def __init__(self, profile_ids):
        super().__init__(daemon=True)
        self.profile_ids = profile_ids
        self.latencies: list[float] = []
        self.lock_timeouts = 0
        self.stop = threading.Event()

    def run(self):
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {self.LOCK_TIMEOUT_MS}")
            i = 0
            while not self.stop.is_set():
                profile_id = self.profile_ids[i % len(self.profile_ids)]
                i += 97
                t0 = time.monotonic()
                try:
                    Event.objects.create(
                        profile_id=profile_id, name="benchmark_ping", occurred_at=timezone.now()
                    )
                    Profile.objects.filter(pk=profile_id).update(updated_at=timezone.now())
                except OperationalError:
                    self.lock_timeouts += 1
                    continue
                self.latencies.append(time.monotonic() - t0)
        finally:
            connections.close_all()


class Command(BaseCommand):
    help = "Time segment refreshes (first and repeated) with ingestion running beside them."

    def add_arguments(self, parser):
        parser.add_argument("--segment", action="append", help="Only this segment (repeatable).")
        parser.add_argument(
            "--everyone",
            action="store_true",
            help=f"Also measure “{EVERYONE}”, a segment of every profile with an email.",
        )

    def handle(self, *args, segment=None, everyone=False, **options):
        if everyone:
            Segment.objects.get_or_create(
                name=EVERYONE,
                defaults={
                    "rules": {
                        "match": "all",
                        "conditions": [
                            {"type": "property", "field": "email", "operator": "exists"}
                        ],
                    }
                },
            )
        segments = Segment.objects.order_by("pk")
        if segment:
            segments = segments.filter(name__in=[*segment, *([EVERYONE] if everyone else [])])
        profiles = Profile.objects.count()
        self.stdout.write(f"{profiles:,} profiles, {Event.objects.count():,} events\n")
        self.stdout.write(
            f"{'segment':<32} {'members':>9} {'first':>8} {'again':>8} {'writes':>7} "
            f"{'slowest write':>14} {'lock waits > 100 ms':>20}"
        )
        sample = list(Profile.objects.order_by("?").values_list("id", flat=True)[:5000])
        for seg in segments:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM segments_segmentmembership WHERE segment_id = %s", [seg.pk]
                )
                cursor.execute("VACUUM ANALYZE segments_segmentmembership")
            ingestion = Ingestion(sample)
            ingestion.start()
            t0 = time.monotonic()
            count = segment_refresh(segment=seg)
            first = time.monotonic() - t0
            t0 = time.monotonic()
            count_again = segment_refresh(segment=seg)
            again = time.monotonic() - t0
            ingestion.stop.set()
            ingestion.join()
            slowest = max(ingestion.latencies, default=0)
            self.stdout.write(
                f"{seg.name[:32]:<32} {count:>9,} {first:>7.2f}s {again:>7.2f}s "
                f"{len(ingestion.latencies):>7,} {slowest * 1000:>11.0f} ms "
                f"{ingestion.lock_timeouts:>20}"
                f"  (median write {statistics.median(ingestion.latencies or [0]) * 1000:.1f} ms)"
            )
            assert SegmentMembership.objects.filter(segment=seg).count() == count_again
        Event.objects.filter(name="benchmark_ping").delete()
