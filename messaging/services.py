"""Writes to campaigns: their audiences, and the record of every change.

Every function locks the campaign row first, so two editors (or an editor
and an "exclude instead" from a segment page) change one audience one after
the other, and a campaign that was sent in the meantime is refused.
"""

from django.db import transaction
from django.utils import timezone

from messaging.models import AudienceChange, AudienceSegment, Campaign

Mode = AudienceSegment.Mode


class AudienceError(Exception):
    """A change the audience cannot take; the message is for the marketer.
    ``status`` is the HTTP status a view answers with."""

    status = 400


class CampaignSent(AudienceError):
    status = 409

    def __init__(self, campaign):
        super().__init__(
            f"“{campaign.name}” was sent: its audience is kept as it was sent, for the report."
        )


def _lock(campaign_id: int) -> Campaign:
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if not campaign.audience_editable:
        raise CampaignSent(campaign)
    return campaign


def _set_mode(*, campaign, segment, after: str, user, kind: str) -> AudienceChange | None:
    """Put the segment in the audience in mode ``after`` ("" takes it out),
    and record the change. Nothing is recorded when nothing changes."""
    row = AudienceSegment.objects.filter(campaign=campaign, segment=segment).first()
    before = row.mode if row else ""
    if before == after:
        return None
    if not after:
        row.delete()
    elif row:
        row.mode = after
        row.save(update_fields=["mode"])
    else:
        AudienceSegment.objects.create(campaign=campaign, segment=segment, mode=after)
    return AudienceChange.objects.create(
        campaign=campaign,
        segment=segment,
        segment_name=segment.name,
        before=before,
        after=after,
        kind=kind,
        changed_by=user,
        changed_by_username=user.get_username() if user else "",
    )


def audience_add(*, campaign: Campaign, segment, mode: str, user) -> AudienceChange:
    """Include or exclude a segment that is not in the audience yet.

    A segment already in the audience is refused rather than switched: a
    segment "both included and excluded" is a mistake to point out, not to
    guess at.
    """
    if mode not in Mode.values:
        raise AudienceError("Choose whether to include or exclude the segment.")
    with transaction.atomic():
        campaign = _lock(campaign.pk)
        current = (
            AudienceSegment.objects.filter(campaign=campaign, segment=segment)
            .values_list("mode", flat=True)
            .first()
        )
        if current:
            verb = "included" if current == Mode.INCLUDE else "excluded"
            raise AudienceError(
                f"“{segment.name}” is already {verb}. A segment is either included or "
                "excluded: remove it first to change that."
            )
        return _set_mode(
            campaign=campaign, segment=segment, after=mode, user=user, kind=AudienceChange.Kind.EDIT
        )


def audience_remove(*, campaign: Campaign, segment, user) -> AudienceChange:
    with transaction.atomic():
        campaign = _lock(campaign.pk)
        change = _set_mode(
            campaign=campaign, segment=segment, after="", user=user, kind=AudienceChange.Kind.EDIT
        )
        if change is None:
            raise AudienceError(f"“{segment.name}” is not in this campaign's audience.")
        return change


def audience_exclude_everywhere(*, segment, campaign_ids, user) -> list[AudienceChange]:
    """Exclude the segment from each of these campaigns ("archive instead of
    deleting"). A campaign that includes the segment itself has it switched
    to excluded; one sent since the list was shown, or that excludes it
    already, is left alone. Returns the changes made."""
    changes = []
    with transaction.atomic():
        campaigns = Campaign.objects.select_for_update().filter(pk__in=campaign_ids)
        for campaign in campaigns.order_by("pk"):
            if not campaign.audience_editable:
                continue
            change = _set_mode(
                campaign=campaign,
                segment=segment,
                after=Mode.EXCLUDE,
                user=user,
                kind=AudienceChange.Kind.ARCHIVE,
            )
            if change:
                changes.append(change)
    return changes


def audience_change_undo(*, campaign: Campaign, change_id: int, user) -> AudienceChange:
    """Put the segment back as it was before the change, if the audience has
    not moved on since (an undo never overwrites a later edit)."""
    with transaction.atomic():
        campaign = _lock(campaign.pk)
        change = (
            AudienceChange.objects.select_for_update()
            .filter(campaign=campaign, pk=change_id)
            .first()
        )
        if change is None:
            raise AudienceError("There is no such change to undo on this campaign.")
        if change.undone_at:
            raise AudienceError("That change was already undone.")
        if change.segment_id is None:
            raise AudienceError(f"“{change.segment_name}” was deleted: there is nothing to undo.")
        current = (
            AudienceSegment.objects.filter(campaign=campaign, segment_id=change.segment_id)
            .values_list("mode", flat=True)
            .first()
        ) or ""
        if current != change.after:
            raise AudienceError(
                f"The audience changed again since ({change.segment_name} is "
                f"{'not in it' if not current else Mode(current).label.lower()} now): "
                "edit it directly."
            )
        undo = _set_mode(
            campaign=campaign,
            segment=change.segment,
            after=change.before,
            user=user,
            kind=AudienceChange.Kind.UNDO,
        )
        change.undone_at = timezone.now()
        change.save(update_fields=["undone_at"])
        return undo


def audience_note_segment_deleted(*, segment) -> None:
    """Before a segment goes (taking its audience rows with it), record in
    each unsent campaign that had it that it is no longer included or
    excluded: a vanished exclusion widens an audience, so it must show."""
    for row in AudienceSegment.objects.filter(
        segment=segment, campaign__status__in=[Campaign.Status.DRAFT, Campaign.Status.SCHEDULED]
    ).select_related("campaign"):
        AudienceChange.objects.create(
            campaign=row.campaign,
            segment=None,
            segment_name=segment.name,
            before=row.mode,
            after="",
            kind=AudienceChange.Kind.SEGMENT_DELETED,
        )
