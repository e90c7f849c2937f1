"""A population where the segment to delete and the people who stay overlap
in every way that matters: events, preferences, other segments, campaigns."""

import random
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from messaging.demo_data import insert_sends
from messaging.models import MessageActivity
from profiles.demo_data import insert_events, insert_preferences, insert_profiles
from profiles.erasure import profile_tables
from segments.models import Segment
from tests.messaging.factories import CampaignFactory, MessageActivityFactory, MessageFactory
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

# Every table that holds a profile's data, and its column pointing at Profile.
PROFILE_TABLES = profile_tables()


@dataclass
class Population:
    segment: Segment
    other_segment: Segment
    doomed: list[int]
    survivors: list[int]
    campaigns: list


def build_population(*, doomed=12, survivors=12, events_each=3, name="Trial users") -> Population:
    segment = SegmentFactory(name=name)
    other = SegmentFactory(name=f"Other than {name}")
    campaigns = [CampaignFactory(name="Launch"), CampaignFactory(name="Digest")]
    doomed_ids, survivor_ids = [], []
    for i in range(doomed + survivors):
        is_doomed = (i % 2 == 0 and len(doomed_ids) < doomed) or len(survivor_ids) >= survivors
        profile = ProfileFactory(properties={"n": i, "plan": "trial" if is_doomed else "paid"})
        for k in range(events_each):
            EventFactory(profile=profile, name=f"event_{k}", properties={"k": k})
        SubscriptionPreferenceFactory(profile=profile, topic="newsletter", subscribed=i % 3 == 0)
        SubscriptionPreferenceFactory(profile=profile, topic="product_updates")
        if is_doomed:
            SegmentMembershipFactory(segment=segment, profile=profile)
            doomed_ids.append(profile.pk)
        else:
            survivor_ids.append(profile.pk)
        if i % 3 != 2:  # overlap: both kinds of people in the other segment
            SegmentMembershipFactory(segment=other, profile=profile)
        for campaign in campaigns:
            message = MessageFactory(campaign=campaign, profile=profile)
            MessageActivityFactory(message=message, kind=MessageActivity.OPEN)
            if i % 4 < 2:  # clicks from half the doomed and half the survivors
                MessageActivityFactory(
                    message=message, kind=MessageActivity.CLICK, url="https://x.test/a"
                )
    segment.member_count = len(doomed_ids)
    segment.last_refreshed_at = timezone.now()
    segment.save()
    return Population(segment, other, doomed_ids, survivor_ids, campaigns)


def insert_population(*, doomed=2000, survivors=1000, name="Churned trials", seed=0) -> Population:
    """The same overlap as build_population, thousands of profiles, in a few
    set-based statements: doomed and surviving ids interleave, everyone has
    2-3 events and some preferences, and both kinds share another segment
    and two campaigns with opens and clicks."""
    segment = SegmentFactory(name=name)
    other = SegmentFactory(name=f"Other than {name}")
    campaigns = [CampaignFactory(name="Launch"), CampaignFactory(name="Digest")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM profiles_profile")
        after = cursor.fetchone()[0]
        insert_profiles(count=doomed + survivors, start=after + 1)
        cursor.execute("SELECT id FROM profiles_profile WHERE id > %s ORDER BY id", [after])
        ids = [row[0] for row in cursor.fetchall()]
        low, high = ids[0], ids[-1]
        insert_events(min_id=low, max_id=high, per_profile=2)
        cursor.execute(
            """
            INSERT INTO profiles_event (profile_id, name, properties, occurred_at, created_at)
            SELECT id, 'signed_in', '{}', now() - interval '1 day', now()
            FROM profiles_profile WHERE id BETWEEN %s AND %s AND id %% 3 = 0
            """,
            [low, high],
        )
        insert_preferences(min_id=low, max_id=high)
        doomed_ids = sorted(random.Random(seed).sample(ids, doomed))
        survivor_ids = sorted(set(ids) - set(doomed_ids))
        cursor.execute(
            """
            INSERT INTO segments_segmentmembership (segment_id, profile_id, joined_at)
            SELECT %s, id, now() FROM unnest(%s::bigint[]) AS id
            UNION ALL
            SELECT %s, id, now() FROM unnest(%s::bigint[]) AS id WHERE id %% 3 <> 2
            """,
            [segment.pk, doomed_ids, other.pk, ids],
        )
    insert_sends(campaign_id=campaigns[0].pk, every=1, offset=0, limit=len(ids))
    insert_sends(campaign_id=campaigns[1].pk, every=2, offset=1, limit=len(ids))
    segment.member_count = doomed
    segment.last_refreshed_at = timezone.now()
    segment.save()
    return Population(segment, other, doomed_ids, survivor_ids, campaigns)


def rows_of(profile_ids) -> dict[str, list[str]]:
    """Every row that belongs to these profiles, as JSON text, per table."""
    dump = {}
    with connection.cursor() as cursor:
        for table, column in PROFILE_TABLES.items():
            cursor.execute(
                f"SELECT row_to_json(t)::text FROM {table} t WHERE {column} = ANY(%s) ORDER BY id",
                [list(profile_ids)],
            )
            dump[table] = [row[0] for row in cursor.fetchall()]
    return dump


def activity_counts() -> dict:
    """Messages, opens and clicks per campaign, as a report counts them."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT m.campaign_id, count(DISTINCT m.id), count(a.id) FILTER (WHERE a.kind = 'open'),
                   count(a.id) FILTER (WHERE a.kind = 'click')
            FROM messaging_message m LEFT JOIN messaging_messageactivity a ON a.message_id = m.id
            GROUP BY m.campaign_id ORDER BY m.campaign_id
            """
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}
