import time
from datetime import timedelta
from functools import reduce
from operator import or_

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from messaging.demo_data import insert_audience_sends
from messaging.models import AudienceSegment, Campaign
from profiles import demo_data
from profiles.models import Profile
from segments.models import Segment
from segments.retention.demo_data import RETENTION_DEMO_SEGMENT, seed_retention_schedule
from segments.rules import rules_matching_profiles

DEMO_USERS = [
    # username, group, superuser
    ("admin", None, True),
    ("editor", "Editors", False),
    ("viewer", "Viewers", False),
]

DEMO_SEGMENTS = [
    (
        RETENTION_DEMO_SEGMENT,
        "Nobody has heard from them in three years: deleted automatically once reviewed.",
        {
            "match": "all",
            "conditions": [
                {"type": "event", "operator": "not_done", "within_days": 3 * 365},
            ],
        },
    ),
    (
        "Inactive for 90 days",
        "People who have not done anything in the last 90 days.",
        {
            "match": "all",
            "conditions": [
                {"type": "event", "operator": "not_done", "within_days": 90},
            ],
        },
    ),
    (
        "Unsubscribed",
        "People who unsubscribed from all email.",
        {"match": "all", "conditions": [{"type": "subscription", "status": "unsubscribed"}]},
    ),
    (
        "Trial users in Germany",
        "On the trial plan, with country DE.",
        {
            "match": "all",
            "conditions": [
                {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
                {"type": "property", "field": "country", "operator": "equals", "value": "DE"},
            ],
        },
    ),
    (
        "Newsletter readers",
        "Opted in to the newsletter topic.",
        {
            "match": "all",
            "conditions": [
                {"type": "subscription", "status": "subscribed", "topic": "newsletter"},
            ],
        },
    ),
    (
        "Repeat buyers",
        "Purchased at least 3 times in the last 60 days.",
        {
            "match": "all",
            "conditions": [
                {
                    "type": "event",
                    "event": "purchase",
                    "operator": "at_least",
                    "count": 3,
                    "within_days": 60,
                },
            ],
        },
    ),
    (
        "High-value subscribers",
        "Lifetime value above 1,500, still subscribed, and active in the last 30 days.",
        {
            "match": "all",
            "conditions": [
                {"type": "property", "field": "lifetime_value", "operator": "gt", "value": 1500},
                {"type": "subscription", "status": "subscribed"},
                {"type": "event", "operator": "at_least", "count": 1, "within_days": 30},
            ],
        },
    ),
    (
        "Churn risk in France or Spain",
        "Churned or trial accounts in FR or ES with no purchase in the last 30 days.",
        {
            "match": "all",
            "conditions": [
                {
                    "match": "any",
                    "conditions": [
                        {
                            "type": "property",
                            "field": "country",
                            "operator": "equals",
                            "value": "FR",
                        },
                        {
                            "type": "property",
                            "field": "country",
                            "operator": "equals",
                            "value": "ES",
                        },
                    ],
                },
                {
                    "match": "any",
                    "conditions": [
                        {
                            "type": "property",
                            "field": "plan",
                            "operator": "equals",
                            "value": "churned",
                        },
                        {
                            "type": "property",
                            "field": "plan",
                            "operator": "equals",
                            "value": "trial",
                        },
                    ],
                },
                {
                    "type": "event",
                    "event": "purchase",
                    "operator": "not_done",
                    "within_days": 30,
                },
            ],
        },
    ),
]

# name, subject, status, days from now (sent: ago; scheduled: ahead),
# included segments, excluded segments. Sent campaigns went to the people of
# their audience then: members of an included segment, less those of an
# excluded one, who had signed up by then, were subscribed and had an email.
DEMO_CAMPAIGNS = [
    (
        "Spring newsletter",
        "What's new this spring",
        "sent",
        20,
        ["Newsletter readers"],
        ["Unsubscribed"],
    ),
    ("Win-back offer", "We miss you: 20% off", "sent", 12, ["Inactive for 90 days"], []),
    ("Trial ending soon", "Your trial ends in 3 days", "sent", 5, ["Trial users in Germany"], []),
    (
        "Product update: reports",
        "Reports got faster",
        "sent",
        30,
        ["High-value subscribers", "Repeat buyers"],
        [],
    ),
    (
        "Summer sale",
        "Summer sale: up to 40% off",
        "scheduled",
        6,
        ["Newsletter readers", "Repeat buyers"],
        ["Unsubscribed", "Churn risk in France or Spain"],
    ),
    (
        "We'd love your feedback",
        "Two minutes to tell us how we're doing",
        "draft",
        None,
        ["Churn risk in France or Spain"],
        ["Unsubscribed"],
    ),
    (
        "Trial tips, week 2",
        "Get more from your trial",
        "draft",
        None,
        ["Trial users in Germany", "Inactive for 90 days"],
        [],
    ),
]

BATCH = 100_000


class Command(BaseCommand):
    help = "Fill the database with realistic demo data and create the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, default=5000)
        parser.add_argument(
            "--events-per-profile",
            type=int,
            default=None,
            help="Events per profile (default: between 10 and 50 each).",
        )
        parser.add_argument(
            "--no-users", action="store_true", help="Do not create the demo logins."
        )
        parser.add_argument(
            "--no-refresh", action="store_true", help="Do not refresh the demo segments."
        )

    def handle(self, *args, profiles, events_per_profile, no_users, no_refresh, **options):
        if profiles < 0 or (events_per_profile is not None and events_per_profile < 0):
            raise CommandError("--profiles and --events-per-profile must not be negative.")
        if not no_users and not settings.DEBUG:
            raise CommandError(
                "Demo logins have a known password, so seed_demo refuses to create them "
                "when DEBUG is off. Use --no-users to seed data only."
            )
        started = time.monotonic()
        # `make run` calls this at every start. Only the first (no profiles
        # yet) seeds and refreshes: a later refresh would rewrite memberships
        # an editor or a running deletion relies on, so a start changes no data.
        seeded = not Profile.objects.exists()
        if not seeded:
            self.stdout.write("Profiles already exist: leaving the data as it is.")
        else:
            self._seed_profiles(profiles, events_per_profile)
            segments = self._seed_segments()
            if not no_refresh:
                self._refresh(segments)
            self._seed_campaigns()
        if not no_users:
            self._seed_users()
        if seeded:
            self.stdout.write(
                seed_retention_schedule(owner=User.objects.filter(username="editor").first())
            )
        self.stdout.write(self.style.SUCCESS(f"Done in {time.monotonic() - started:.1f}s."))

    def _seed_profiles(self, count, events_per_profile):
        done = events = 0
        while done < count:
            size = min(BATCH, count - done)
            with transaction.atomic():
                demo_data.insert_profiles(count=size, start=done + 1)
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT min(id), max(id) FROM (SELECT id FROM profiles_profile "
                        "ORDER BY id DESC LIMIT %s) t",
                        [size],
                    )
                    lo, hi = cursor.fetchone()
                events += demo_data.insert_events(
                    min_id=lo, max_id=hi, per_profile=events_per_profile
                )
                demo_data.insert_preferences(min_id=lo, max_id=hi)
            done += size
            self.stdout.write(f"  profiles {done:,}/{count:,}  events {events:,}")
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE profiles_profile; ANALYZE profiles_event; "
                "ANALYZE profiles_subscriptionpreference;"
            )

    def _seed_segments(self):
        segments = []
        for name, description, rules in DEMO_SEGMENTS:
            segment, _ = Segment.objects.get_or_create(
                name=name, defaults={"description": description, "rules": rules}
            )
            segments.append(segment)
        self.stdout.write(f"  {len(segments)} demo segments")
        return segments

    def _refresh(self, segments):
        from segments.services import segment_refresh

        for segment in segments:
            t0 = time.monotonic()
            count = segment_refresh(segment=segment)
            self.stdout.write(
                f"  refreshed {segment.name!r}: {count:,} profiles in {time.monotonic() - t0:.1f}s"
            )

    def _seed_campaigns(self):
        now = timezone.now()
        segments = {segment.name: segment for segment in Segment.objects.all()}
        for name, subject, status, days, included, excluded in DEMO_CAMPAIGNS:
            if Campaign.objects.filter(name=name).exists():
                continue
            with transaction.atomic():
                campaign = Campaign.objects.create(name=name, subject=subject, status=status)
                for mode, names in (("include", included), ("exclude", excluded)):
                    AudienceSegment.objects.bulk_create(
                        AudienceSegment(campaign=campaign, segment=segments[n], mode=mode)
                        for n in names
                        if n in segments
                    )
                created = now - timedelta(days=(days or 0) + 3)
                Campaign.objects.filter(pk=campaign.pk).update(created_at=created)
                if status == "scheduled":
                    Campaign.objects.filter(pk=campaign.pk).update(
                        scheduled_for=now + timedelta(days=days)
                    )
                if status != "sent":
                    self.stdout.write(f"  campaign {name!r}: {status}")
                    continue
                sent_at = now - timedelta(days=days)
                sent = insert_audience_sends(
                    campaign_id=campaign.pk,
                    recipients=self._audience(included, excluded),
                    sent_at=sent_at,
                    limit=200_000,
                )
                Campaign.objects.filter(pk=campaign.pk).update(sent_at=sent_at)
            self.stdout.write(f"  campaign {name!r}: {sent:,} sends")

    @staticmethod
    def _audience(included, excluded):
        """Who the rules of the included segments pick, less whom the
        excluded ones pick: the memberships a refresh would make (and does,
        unless --no-refresh), so every send is to someone in the audience."""
        rules = dict(
            Segment.objects.filter(name__in=included + excluded).values_list("name", "rules")
        )
        picked = reduce(or_, (Q(pk__in=rules_matching_profiles(rules[n])) for n in included))
        for name in excluded:
            picked &= ~Q(pk__in=rules_matching_profiles(rules[name]))
        return Profile.objects.filter(picked).values("id")

    def _seed_users(self):
        password = settings.DEMO_PASSWORD
        for username, group_name, superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "is_staff": superuser,
                    "is_superuser": superuser,
                    "email": f"{username}@example.com",
                },
            )
            if created:
                user.set_password(password)
                user.save()
            if group_name:
                user.groups.add(Group.objects.get(name=group_name))
        self.stdout.write("")
        self.stdout.write(
            "Demo logins (password: %s):"
            % ("demo" if password == "demo" else "the value of DEMO_PASSWORD")  # noqa: S105
        )
        for username, group_name, superuser in DEMO_USERS:
            role = "superuser, Django admin" if superuser else f"{group_name}"
            self.stdout.write(f"  {username:<8} {role}")
