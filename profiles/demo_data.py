"""Set-based generators for demo and benchmark data.

Rows are produced by PostgreSQL itself (``generate_series`` and arrays of
realistic values drawn once with Faker), so a million profiles with ten
events each is a handful of INSERT ... SELECT statements, with flat memory in
Python. The apps above profiles (messaging, segments) have their own
generators built the same way.
"""

from django.db import connection
from faker import Faker

COUNTRIES = ["DE", "FR", "GB", "US", "NL", "ES", "IT", "SE", "PL", "CA", "AU", "BR"]
PLANS = ["trial", "starter", "growth", "enterprise", "churned"]
EVENT_NAMES = [
    "page_viewed",
    "signed_in",
    "product_viewed",
    "added_to_cart",
    "purchase",
    "email_opened",
    "feature_used",
    "invited_teammate",
]
TOPICS = ["newsletter", "product_updates", "promotions"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.test", "inbox.test"]


def _name_pools(seed: int = 1234) -> tuple[list[str], list[str]]:
    fake = Faker()
    Faker.seed(seed)
    first = sorted({fake.first_name() for _ in range(400)})
    last = sorted({fake.last_name() for _ in range(400)})
    return first, last


def insert_profiles(*, count: int, start: int) -> None:
    """Insert ``count`` profiles numbered from ``start`` (user ids ``u<start>``...)."""
    first, last = _name_pools()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH gen AS (
                SELECT g AS n,
                       %(first)s::text[] AS f, %(last)s::text[] AS l,
                       hashint4(g) AS h1, hashint4(g + 7919) AS h2, hashint4(g + 104729) AS h3
                FROM generate_series(%(start)s, %(stop)s) AS g
            ), picked AS (
                SELECT n,
                       f[1 + abs(h1) %% array_length(f, 1)] AS first_name,
                       l[1 + abs(h2) %% array_length(l, 1)] AS last_name,
                       (%(countries)s::text[])[1 + abs(h3) %% %(n_countries)s] AS country,
                       (%(plans)s::text[])[1 + abs(h1 / 7) %% %(n_plans)s] AS plan,
                       18 + abs(h2 / 11) %% 60 AS age,
                       (%(domains)s::text[])[1 + abs(h3 / 13) %% %(n_domains)s] AS domain,
                       abs(h1 / 3) %% 100 AS roll,
                       now() - make_interval(days => abs(h3 / 17) %% 900) AS created
                FROM gen
            )
            INSERT INTO profiles_profile
                (user_id, email, properties, tags, subscribed, unsubscribed_at,
                 created_at, updated_at)
            SELECT 'u' || n,
                   lower(first_name || '.' || last_name || n || '@' || domain),
                   jsonb_build_object(
                       'first_name', first_name, 'last_name', last_name, 'country', country,
                       'plan', plan, 'age', age, 'lifetime_value', (roll * 37) %% 2000,
                       'signed_up_at', to_char(created, 'YYYY-MM-DD')),
                   CASE WHEN roll < 10 THEN ARRAY['vip'] ELSE ARRAY[]::varchar[] END,
                   roll >= 12,
                   -- Unsubscribed a month after signing up, or half-way
                   -- to today for someone newer: never in the future.
                   CASE WHEN roll < 12 THEN LEAST(created + interval '30 days',
                                                  created + (now() - created) / 2) END,
                   created, created
            FROM picked
            """,
            {
                "first": first,
                "last": last,
                "start": start,
                "stop": start + count - 1,
                "countries": COUNTRIES,
                "n_countries": len(COUNTRIES),
                "plans": PLANS,
                "n_plans": len(PLANS),
                "domains": DOMAINS,
                "n_domains": len(DOMAINS),
            },
        )


def insert_events(*, min_id: int, max_id: int, per_profile: int | None) -> int:
    """Events for profiles with ids in [min_id, max_id]: ``per_profile`` each,
    or 10 to 50 each when it is None. Returns the number inserted."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO profiles_event (profile_id, name, properties, occurred_at, created_at)
            SELECT p.id,
                   (%(names)s::text[])[1 + abs(hashint8(p.id * 64 + s)) %% %(n_names)s],
                   jsonb_build_object('source', CASE WHEN s %% 3 = 0 THEN 'web' ELSE 'app' END),
                   -- profile 7's activity stops 10 days earlier than profile 6's,
                   -- so "inactive for 90 days" catches a real share of people;
                   -- nobody acts before signing up: a newer profile's events
                   -- fall between its creation and now.
                   CASE WHEN t.at >= p.created_at THEN t.at
                        ELSE p.created_at + (now() - p.created_at)
                             * ((abs(hashint8(p.id * 5 + s)) %% 1000) / 1000.0) END,
                   now()
            FROM profiles_profile p
            CROSS JOIN LATERAL generate_series(
                1, COALESCE(%(per)s, 10 + abs(hashint8(p.id)) %% 41)) AS s
            CROSS JOIN LATERAL (
                SELECT now() - make_interval(
                    days => ((p.id %% 13) * 10 + abs(hashint8(p.id + s)) %% 60)::int,
                    secs => abs(hashint8(p.id * 3 + s)) %% 86400) AS at
            ) AS t
            WHERE p.id BETWEEN %(lo)s AND %(hi)s
            """,
            {
                "names": EVENT_NAMES,
                "n_names": len(EVENT_NAMES),
                "per": per_profile,
                "lo": min_id,
                "hi": max_id,
            },
        )
        return cursor.rowcount


def insert_preferences(*, min_id: int, max_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO profiles_subscriptionpreference (profile_id, topic, subscribed, changed_at)
            SELECT p.id, t.topic, abs(hashint8(p.id * 5 + t.i)) %% 4 <> 0,
                   LEAST(p.created_at + interval '1 day', now())
            FROM profiles_profile p
            CROSS JOIN unnest(%(topics)s::text[]) WITH ORDINALITY AS t(topic, i)
            WHERE p.id BETWEEN %(lo)s AND %(hi)s
              AND abs(hashint8(p.id + t.i)) %% 3 <> 0
            """,
            {"topics": TOPICS, "lo": min_id, "hi": max_id},
        )
        return cursor.rowcount
