"""Set-based generator of campaign sends, opens and clicks (see profiles.demo_data)."""

from django.db import connection

# Opens for about 45% of the messages (a second open for 15%), clicks for 12%,
# from a few minutes to three and a half days after the send, never in the future.
_ACTIVITY = """
    INSERT INTO messaging_messageactivity
        (message_id, profile_id, kind, occurred_at, url, ip_address, user_agent)
    SELECT m.id, m.profile_id, a.kind,
           LEAST(m.sent_at + make_interval(mins => (5 + abs(hashint8(m.id)) %% 5000)::int),
                 greatest(m.sent_at, now())),
           CASE WHEN a.kind = 'click'
                THEN 'https://shop.example.com/offer?c=' || m.campaign_id ELSE '' END,
           ('198.51.100.' || (1 + abs(hashint8(m.id * 7)) %% 254))::inet,
           'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15'
    FROM messaging_message m
    CROSS JOIN LATERAL (
        SELECT 'open' AS kind WHERE abs(hashint8(m.id)) %% 100 < 45
        UNION ALL
        SELECT 'open' WHERE abs(hashint8(m.id)) %% 100 < 15
        UNION ALL
        SELECT 'click' WHERE abs(hashint8(m.id)) %% 100 < 12
    ) AS a
    WHERE m.campaign_id = %(campaign)s
"""


def insert_sends(*, campaign_id: int, every: int, offset: int, limit: int) -> int:
    """Send the campaign to every ``every``-th profile (from ``offset``), at most
    ``limit`` sends, with opens and clicks (tests' populations, which need
    sends to people of no particular segment). Returns the number of messages."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_message (campaign_id, profile_id, recipient_email, sent_at)
            SELECT %(campaign)s, p.id, p.email, now() - interval '20 days'
            FROM profiles_profile p
            WHERE p.id %% %(every)s = %(offset)s AND p.email <> ''
            ORDER BY p.id
            LIMIT %(limit)s
            """,
            {"campaign": campaign_id, "every": every, "offset": offset, "limit": limit},
        )
        sent = cursor.rowcount
        cursor.execute(_ACTIVITY, {"campaign": campaign_id})
    return sent


def insert_audience_sends(*, campaign_id: int, recipients, sent_at, limit: int) -> int:
    """Send the campaign at ``sent_at`` to its audience as it was then:
    ``recipients`` (a queryset of profile ids: the included segments' people
    less the excluded ones'), of whom only those who existed by then, were
    subscribed and have an email. Each message goes out within ten minutes
    after ``sent_at``, as a real send takes a while. Returns the number of
    messages."""
    audience_sql, audience_params = recipients.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO messaging_message (campaign_id, profile_id, recipient_email, sent_at)
            SELECT %s, p.id, p.email,
                   %s::timestamptz + make_interval(secs => abs(hashint8(p.id)) %% 600)
            FROM profiles_profile p
            WHERE p.id IN ({audience_sql})
              AND p.email <> '' AND p.subscribed AND p.created_at <= %s::timestamptz
            ORDER BY p.id
            LIMIT %s
            """,  # noqa: S608 (the audience is a queryset's own SQL, with its parameters)
            [campaign_id, sent_at, *audience_params, sent_at, limit],
        )
        sent = cursor.rowcount
        cursor.execute(_ACTIVITY, {"campaign": campaign_id})
    return sent
