"""Impact before confirming: what else a deletion changes, for the dialog.

Three figures, each one set-based statement under its own statement timeout
(``IMPACT_TIMEOUT_MS``; the campaigns' own ``COUNT_TIMEOUT_MS``), so a figure
that takes too long says so ("too many to count quickly") instead of holding
the dialog:

- the other segments these people are also in, and how many each loses;
- the draft and scheduled campaigns whose audience reaches these people (the
  same list *Exclude from all campaigns instead* offers);
- when the segment's rules now match a different set than its last refresh,
  how many people joined and left since (the rules evaluated now, against
  the stored membership, as a refresh would).

The dialog loads this block with htmx once it is open (``hx-trigger="load"``),
so the dialog itself appears at once; the full-page dialog (no JavaScript)
computes it inline through the ``deletion_impact`` template tag.
"""

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_safe

from messaging.selectors import archive_candidates
from segments.counting import TookTooLong, with_statement_timeout
from segments.deletion.selectors import user_can_delete_profiles
from segments.models import Segment, SegmentMembership
from segments.rules import RulesError, rules_matching_profiles

# Each figure gets this long; two figures keep the block under about 3 s.
IMPACT_TIMEOUT_MS = 1500
# The dialog lists this many other segments, then says how many more.
MAX_LISTED = 12


@dataclass(frozen=True)
class OtherSegment:
    pk: int
    name: str
    member_count: int | None
    losing: int


@dataclass
class Drift:
    """How the rules' matches now differ from the stored membership.

    ``state``: "same", "changed", "never" (never refreshed), "invalid"
    (the rules cannot be evaluated) or "slow" (took too long to count)."""

    state: str
    joined: int = 0
    left: int = 0


@dataclass
class Impact:
    # None when counting took too long.
    others: list[OtherSegment] | None
    more_others: int
    drift: Drift
    # Draft and scheduled campaigns that would reach these people.
    campaigns: list
    # False when checking shared members took too long: ``campaigns`` is then
    # every unsent campaign with an audience, a list that may be too long.
    campaigns_exact: bool


def deletion_impact_figures(*, segment: Segment) -> Impact:
    others = _other_segments(segment)
    listed, more = (None, 0) if others is None else (others[:MAX_LISTED], len(others) - MAX_LISTED)
    campaigns, exact = archive_candidates(segment=segment)
    return Impact(
        others=listed,
        more_others=max(more, 0),
        drift=_drift(segment),
        campaigns=campaigns,
        campaigns_exact=exact,
    )


_OTHERS_SQL = """
SELECT s.id, s.name, s.member_count, losing.n
FROM (
    SELECT other.segment_id, count(*) AS n
    FROM {membership} mine
    JOIN {membership} other
      ON other.profile_id = mine.profile_id AND other.segment_id <> mine.segment_id
    WHERE mine.segment_id = %s
    GROUP BY other.segment_id
) losing
JOIN {segment} s ON s.id = losing.segment_id
ORDER BY losing.n DESC, s.name, s.id
"""


def _other_segments(segment: Segment) -> list[OtherSegment] | None:
    sql = _OTHERS_SQL.format(
        membership=SegmentMembership._meta.db_table, segment=Segment._meta.db_table
    )

    def read():
        with connection.cursor() as cursor:
            cursor.execute(sql, [segment.pk])
            return [OtherSegment(*row) for row in cursor.fetchall()]

    try:
        return with_statement_timeout(IMPACT_TIMEOUT_MS, read)
    except TookTooLong:
        return None


# The rules as they are now against the stored membership: the same
# difference a refresh computes (segments.services._REFRESH_SQL), counted
# instead of applied. Only our own table names are spliced in.
_DRIFT_SQL = """
WITH matching AS MATERIALIZED ({members}),
current AS MATERIALIZED (SELECT profile_id AS id FROM {membership} WHERE segment_id = %s)
SELECT
    (SELECT count(*) FROM (SELECT id FROM matching EXCEPT SELECT id FROM current) joined),
    (SELECT count(*) FROM (SELECT id FROM current EXCEPT SELECT id FROM matching) gone)
"""


def _drift(segment: Segment) -> Drift:
    if segment.last_refreshed_at is None:
        return Drift("never")
    try:
        members = rules_matching_profiles(segment.rules, now=timezone.now())
    except RulesError:
        return Drift("invalid")
    members_sql, members_params = members.query.sql_with_params()
    sql = _DRIFT_SQL.format(members=members_sql, membership=SegmentMembership._meta.db_table)

    def read():
        with connection.cursor() as cursor:
            cursor.execute(sql, [*members_params, segment.pk])
            return cursor.fetchone()

    try:
        joined, left = with_statement_timeout(IMPACT_TIMEOUT_MS, read)
    except TookTooLong:
        return Drift("slow")
    return Drift("changed" if joined or left else "same", joined=joined, left=left)


@require_safe
@login_required
def deletion_impact(request: HttpRequest, pk: int) -> HttpResponse:
    """The dialog's impact block (htmx), or the same as a page."""
    if not user_can_delete_profiles(request.user):
        raise PermissionDenied
    segment = get_object_or_404(Segment, pk=pk)
    context = {"segment": segment, "impact": deletion_impact_figures(segment=segment)}
    template = "segments/_impact_figures.html" if request.htmx else "segments/deletion_impact.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response
