"""Time the profile search: a segment's members and the profile list, as
their pages ask (one page of 50 by keyset, the capped count of matches, the
exact match named above them), against the old search (an exact user id or
email, else the start of an email) on the same data.

By default it builds a database of its own (``vero_search_bench``: migrate,
then ``seed_demo --profiles N``, as ``benchmark_deletion`` builds its
template) and reuses it on the next run while it holds N profiles; a segment
of every other profile stands for the members. It reads only, after that.
``--current`` measures the current database instead (adding the benchmark
segment, and removing it at the end).

Queries come from the data (a piece of a member's email, of a user id, a
last name), plus a miss, a 3-character query and a 2-character one (too
short for the index: an exact match only). Every query and every variant
take turns, ``--runs`` times; the table gives the median and the range.
"""

import statistics
import time
from functools import partial

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Max, Min, Q
from django.test import RequestFactory

from profiles import selectors as profile_selectors
from profiles.models import Profile
from segments import selectors
from segments.deletion.benchmark import Databases, _manage
from segments.models import Segment
from vero_admin.pagination import SEARCH_COUNT_CAP, count_capped, keyset_page

SEGMENT_NAME = "Benchmark: search members"


def _old_search(queryset, query: str, *, prefix: str = ""):
    """The search before the trigram index, as it was written: exact matches
    by index first, else the start of an email ignoring case (a scan)."""
    exact = (
        Q(**{f"{prefix}user_id": query})
        | Q(**{f"{prefix}email": query})
        | Q(**{f"{prefix}email": query.lower()})
    )
    if queryset.filter(exact).exists():
        return queryset.filter(exact)
    return queryset.filter(**{f"{prefix}email__istartswith": query})


def _page(queryset, query: str, *, key: str, count: bool, segment: Segment | None = None):
    """What a page asks of the database: 50 rows after no cursor, and (new
    search) the count of matches (capped, and only when there is more than
    a page), the exact match, and on a segment's page that finds nobody, a
    profile outside the segment that matches."""
    request = RequestFactory().get("/", {"q": query})
    total = partial(count_capped, queryset, cap=SEARCH_COUNT_CAP) if count else None
    page = keyset_page(queryset, request, key=key, per_page=50, total=total)
    if count:
        profile_selectors.profile_exact_match(query=query)
        if segment is not None and not page.object_list:
            selectors.segment_non_member(segment=segment, query=query)
    return len(page.object_list)


def variants(segment: Segment) -> dict:
    return {
        "members": lambda q: _page(
            selectors.segment_members(segment=segment, query=q),
            q,
            key="profile_id",
            count=True,
            segment=segment,
        ),
        "members, old prefix": lambda q: _page(
            _old_search(selectors.segment_members(segment=segment), q, prefix="profile__"),
            q,
            key="profile_id",
            count=False,
        ),
        "profiles": lambda q: _page(
            profile_selectors.profile_search(query=q), q, key="pk", count=True
        ),
        "profiles, old prefix": lambda q: _page(
            _old_search(Profile.objects.all(), q), q, key="pk", count=False
        ),
    }


def pick_queries(segment: Segment) -> dict[str, str]:
    """Representative queries, taken from a member in the middle of the ids."""
    bounds = Profile.objects.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        raise CommandError("There are no profiles to search: seed some first.")
    middle = (bounds["low"] + bounds["high"]) // 2
    members = Profile.objects.filter(memberships__segment=segment).exclude(email="")
    sample = members.filter(pk__gte=middle).order_by("pk").first() or members.first()
    if sample is None:
        raise CommandError("No member with an email to search for.")
    local = sample.email.split("@")[0]
    user_id = sample.user_id or ""
    last_name = sample.properties.get("last_name") if isinstance(sample.properties, dict) else None
    return {
        "part of an email": local[len(local) // 3 : len(local) // 3 + 8],
        "part of a user id": user_id[1:-1] if len(user_id) > 4 else user_id,
        "attribute value (last name)": str(last_name or local[:6]),
        "miss": "zqxjv-nobody",
        "3 characters": local[:3],
        "2 characters (exact only)": local[:2],
    }


def ensure_segment() -> tuple[Segment, bool]:
    """The segment of every other profile; created (and analysed) if missing."""
    segment = Segment.objects.filter(name=SEGMENT_NAME).first()
    if segment is not None:
        return segment, False
    segment = Segment.objects.create(name=SEGMENT_NAME, description="Every other profile.")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO segments_segmentmembership (segment_id, profile_id, joined_at) "
            "SELECT %s, id, now() FROM profiles_profile WHERE id %% 2 = 0",
            [segment.pk],
        )
        members = cursor.rowcount
        cursor.execute("ANALYZE profiles_profile")
        cursor.execute("ANALYZE segments_segmentmembership")
    Segment.objects.filter(pk=segment.pk).update(member_count=members)
    segment.refresh_from_db()
    return segment, True


def measure(*, runs: int, log) -> None:
    segment, created = ensure_segment()
    try:
        queries = pick_queries(segment)
        timers = variants(segment)
        times = {(label, name): [] for label in queries for name in timers}
        found = {}
        for _ in range(runs):
            for label, query in queries.items():
                for name, run in timers.items():
                    started = time.perf_counter()
                    found[label, name] = run(query)
                    times[label, name].append(time.perf_counter() - started)
        profiles = Profile.objects.count()
        log(
            f"{profiles:,} profiles; members: “{segment.name}”, {segment.member_count:,}; "
            f"{runs} runs each, taking turns. Median (min-max), ms; rows on the first page."
        )
        log("")
        head = f"{'query':<30} {'text':<18}" + "".join(f" {name:>24}" for name in timers)
        log(head)
        for label, query in queries.items():
            cells = []
            for name in timers:
                sample = times[label, name]
                cells.append(
                    f"{statistics.median(sample) * 1000:,.1f} "
                    f"({min(sample) * 1000:,.1f}-{max(sample) * 1000:,.1f}) "
                    f"[{found[label, name]}]"
                )
            log(f"{label:<30} {query[:18]:<18}" + "".join(f" {cell:>24}" for cell in cells))
    finally:
        if created and not segment_is_kept():
            Segment.objects.filter(pk=segment.pk).delete()


def segment_is_kept() -> bool:
    """The benchmark's own database keeps its segment for the next run."""
    return connection.settings_dict["NAME"].startswith("vero_search_bench")


class Command(BaseCommand):
    help = (
        "Time the members search and the profile list search (and the old prefix search) "
        "on a database of N profiles, built once and reused. Prints median and range."
    )

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, default=1_000_000)
        parser.add_argument("--events-per-profile", type=int, default=2)
        parser.add_argument("--runs", type=int, default=7, help="Repetitions of each (7).")
        parser.add_argument("--database", default="vero_search_bench", help="Its own database.")
        parser.add_argument("--rebuild", action="store_true", help="Build the database again.")
        parser.add_argument(
            "--current", action="store_true", help="Measure the current database instead."
        )

    def handle(self, *args, profiles, events_per_profile, runs, database, rebuild, current, **o):
        if runs < 1 or profiles < 10 or events_per_profile < 0:
            raise CommandError("--runs must be >= 1, --profiles >= 10, --events >= 0.")
        if current:
            measure(runs=runs, log=self.stdout.write)
            return
        if not database.startswith("vero_search_bench"):
            raise CommandError("--database must start with vero_search_bench (it is rebuilt).")
        dbs = Databases(database)
        if rebuild or _profiles_in(dbs, database) < profiles:
            self.stdout.write(f"Building {database}: {profiles:,} profiles…")
            started = time.monotonic()
            dbs.recreate(database)
            url = dbs.url(database)
            _manage(["migrate", "--noinput"], database_url=url)
            _manage(
                [
                    "seed_demo",
                    "--profiles",
                    str(profiles),
                    "--events-per-profile",
                    str(events_per_profile),
                    "--no-users",
                    "--no-refresh",
                ],
                database_url=url,
            )
            self.stdout.write(f"  built in {time.monotonic() - started:.0f} s")
        else:
            self.stdout.write(f"Reusing {database}.")
        with dbs.use(database):
            measure(runs=runs, log=self.stdout.write)


def _profiles_in(dbs: Databases, name: str) -> int:
    """How many profiles the benchmark database holds (0 if it is missing or
    not migrated up to the search index)."""
    try:
        with psycopg.connect(**dbs._params(name)) as conn:
            indexed = conn.execute(
                "SELECT 1 FROM pg_indexes WHERE indexname = 'profile_search_trgm_idx'"
            ).fetchone()
            if not indexed:
                return 0
            return conn.execute("SELECT count(*) FROM profiles_profile").fetchone()[0]
    except psycopg.Error:
        return 0
