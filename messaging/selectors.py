from contextlib import contextmanager

from django.apps import apps
from django.db import OperationalError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from messaging.models import AudienceChange, AudienceSegment, Campaign, Message, MessageActivity

Mode = AudienceSegment.Mode
UNSENT = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
# Counts on a page give up after this long and say so, rather than hold the page.
COUNT_TIMEOUT_MS = 2000


def campaign_report(*, campaign: Campaign) -> dict:
    """Sent, opened and clicked, total and unique (by message), in two queries.

    Anonymized rows (their profile erased) still count: that is why erasure
    keeps them.
    """
    sent = Message.objects.filter(campaign=campaign).count()
    activity = MessageActivity.objects.filter(message__campaign=campaign).aggregate(
        opens=Count("id", filter=Q(kind=MessageActivity.OPEN)),
        unique_opens=Count("message", filter=Q(kind=MessageActivity.OPEN), distinct=True),
        clicks=Count("id", filter=Q(kind=MessageActivity.CLICK)),
        unique_clicks=Count("message", filter=Q(kind=MessageActivity.CLICK), distinct=True),
    )
    report = {"sent": sent, **activity}
    report["open_rate"] = _rate(report["unique_opens"], sent)
    report["click_rate"] = _rate(report["unique_clicks"], sent)
    return report


def _rate(part: int, whole: int) -> float:
    return round(part * 100 / whole, 1) if whole else 0.0


def campaign_sends(*, campaign: Campaign):
    return campaign.messages.annotate(
        opens=Count("activities", filter=Q(activities__kind=MessageActivity.OPEN)),
        clicks=Count("activities", filter=Q(activities__kind=MessageActivity.CLICK)),
    )


def campaign_list():
    """Each campaign with its number of sends and of included and excluded
    segments, each counted in its own subquery (a join of sends with
    audience rows would multiply them)."""
    return Campaign.objects.annotate(
        sent=_count(Message.objects.filter(campaign=OuterRef("pk"))),
        included=_count(AudienceSegment.objects.filter(campaign=OuterRef("pk"), mode=Mode.INCLUDE)),
        excluded=_count(AudienceSegment.objects.filter(campaign=OuterRef("pk"), mode=Mode.EXCLUDE)),
    ).order_by("-created_at", "-id")


def _count(rows):
    counted = rows.order_by().values("campaign").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted), 0)


def _segments():
    """Segments sit above messaging: reached by name, never by import."""
    return apps.get_model("segments", "Segment")


def _memberships():
    return apps.get_model("segments", "SegmentMembership").objects.all()


@contextmanager
def _time_limit():
    """Run the block's statements under ``COUNT_TIMEOUT_MS``; a
    statement cancelled for running longer raises ``TooSlow``. The block is
    a savepoint of its own, so a cancel leaves the caller's transaction
    usable, and the limit is put back afterwards."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            previous = cursor.fetchone()[0]
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                [f"{int(COUNT_TIMEOUT_MS)}ms"],
            )
            yield cursor
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == "57014":  # query_canceled
            raise TooSlow from error
        raise


class TooSlow(Exception):
    pass


def audience_of(*, campaign: Campaign) -> dict:
    """The campaign's included and excluded segments, by name."""
    rows = list(AudienceSegment.objects.filter(campaign=campaign).select_related("segment"))
    return {
        "included": [row.segment for row in rows if row.mode == Mode.INCLUDE],
        "excluded": [row.segment for row in rows if row.mode == Mode.EXCLUDE],
    }


def campaign_reach(*, campaign: Campaign) -> int | None:
    """How many distinct people the campaign would reach now: members of any
    included segment, less members of any excluded one (exclusion wins).
    Memberships are as of each segment's last refresh. One set-based
    statement; None when it takes longer than the time limit (the page then
    says so instead of waiting)."""
    included, excluded = [], []
    for mode, segment_id in AudienceSegment.objects.filter(campaign=campaign).values_list(
        "mode", "segment_id"
    ):
        (included if mode == Mode.INCLUDE else excluded).append(segment_id)
    if not included:
        return 0
    memberships = _memberships()
    reached = (
        memberships.filter(segment_id__in=included)
        .exclude(profile_id__in=memberships.filter(segment_id__in=excluded).values("profile_id"))
        .values("profile_id")
        .distinct()
    )
    try:
        with _time_limit():
            return reached.count()
    except TooSlow:
        return None


def audience_changes(*, campaign: Campaign, limit: int = 50):
    return AudienceChange.objects.filter(campaign=campaign).order_by("-changed_at", "-id")[:limit]


def audience_segment_choices(*, campaign: Campaign):
    """Segments that can still be added to the campaign's audience."""
    return (
        _segments()
        .objects.exclude(
            pk__in=AudienceSegment.objects.filter(campaign=campaign).values("segment_id")
        )
        .order_by("name")
    )


def segment_campaign_usage(*, segment) -> dict:
    """The campaigns that include the segment, and those that exclude it."""
    rows = AudienceSegment.objects.filter(segment=segment).select_related("campaign")
    rows = rows.order_by("-campaign__created_at", "-campaign__id")
    return {
        "included_in": [row.campaign for row in rows if row.mode == Mode.INCLUDE],
        "excluded_from": [row.campaign for row in rows if row.mode == Mode.EXCLUDE],
    }


def archive_candidates(*, segment) -> tuple[list[Campaign], bool]:
    """Draft and scheduled campaigns that would reach people of this segment,
    and do not exclude it yet: those that include it, and those that include
    another segment sharing at least one member with it (as of the last
    refreshes). Returns ``(campaigns, exact)``; when checking for shared
    members takes too long, every unsent campaign that includes any segment
    is listed (excluding the segment from one it does not reach changes
    nothing), and ``exact`` is False."""
    unsent = (
        Campaign.objects.filter(status__in=UNSENT)
        .filter(Exists(AudienceSegment.objects.filter(campaign=OuterRef("pk"), mode=Mode.INCLUDE)))
        .exclude(
            Exists(
                AudienceSegment.objects.filter(
                    campaign=OuterRef("pk"), segment=segment, mode=Mode.EXCLUDE
                )
            )
        )
        .order_by("status", "name", "pk")
    )
    memberships = _memberships()
    shares_members = memberships.filter(segment_id=OuterRef("segment_id")).filter(
        Exists(memberships.filter(segment_id=segment.pk, profile_id=OuterRef("profile_id")))
    )
    reaching = AudienceSegment.objects.filter(campaign=OuterRef("pk"), mode=Mode.INCLUDE).filter(
        Q(segment_id=segment.pk) | Exists(shares_members)
    )
    try:
        with _time_limit():
            return list(unsent.filter(Exists(reaching))), True
    except TooSlow:
        return list(unsent), False


def segment_by_id(*, segment_id: int):
    return _segments().objects.filter(pk=segment_id).first()
