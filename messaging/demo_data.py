"""Set-based generator of campaign sends, opens and clicks (see profiles.demo_data)."""

from django.db import connection


def insert_sends(*, campaign_id: int, every: int, offset: int, limit: int) -> int:
    """Send the campaign to every ``every``-th profile (from ``offset``), at most
    ``limit`` sends, with opens for about 45% and clicks for about 12% of them.
    Returns the number of messages."""
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
        cursor.execute(
            """
            INSERT INTO messaging_messageactivity
                (message_id, profile_id, kind, occurred_at, url, ip_address, user_agent)
            SELECT m.id, m.profile_id, a.kind,
                   m.sent_at + make_interval(mins => (5 + abs(hashint8(m.id)) %% 5000)::int),
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
            """,
            {"campaign": campaign_id},
        )
    return sent
