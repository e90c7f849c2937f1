from django.db.models import Count, Q

from messaging.models import Campaign, Message, MessageActivity


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
    return (
        Campaign.objects.select_related("audience")
        .annotate(sent=Count("messages"))
        .order_by("-created_at", "-id")
    )
