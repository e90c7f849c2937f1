"""Reads for the retention pages and the dry-run command."""

from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg import errors as pg_errors

from profiles.models import Profile
from segments.deletion.selectors import user_can_delete_profiles
from segments.models import DeletionJob, RetentionSchedule, Segment
from segments.rules import RulesError, rules_matching_profiles

# The dry run runs on a page load: it gives up after this long.
DRY_RUN_TIMEOUT_MS = 2000
DRY_RUN_SAMPLE = 10


@dataclass
class DryRun:
    """What the next run would delete if it ran now: who matches the rules
    now (what its refresh would find). Shown, never stored."""

    count: int | None = None  # None: not counted (too slow, or the rules are not valid)
    sample: list = field(default_factory=list)  # a few profiles, by id
    problem: str = ""  # why there is no count, in words
    over_brake: bool = False
    rules_changed: bool = False  # the run would pause instead: rules not as confirmed
    active_job: DeletionJob | None = None  # the run would be skipped while it runs


def retention_dry_run(
    *,
    schedule: RetentionSchedule,
    now=None,
    timeout_ms: int | None = DRY_RUN_TIMEOUT_MS,
    sample: bool = True,
) -> DryRun:
    """Count the profiles the rules select now, and take a sample (unless
    ``sample`` is False: the viewer may not see profiles), in one
    transaction bounded by ``timeout_ms`` (None: no bound). Reads only."""
    segment = schedule.segment
    result = DryRun(
        rules_changed=schedule.rules_changed and not schedule.is_paused,
        active_job=DeletionJob.objects.filter(
            segment=segment, status__in=DeletionJob.ACTIVE_STATUSES
        ).first(),
    )
    now = now or timezone.now()
    try:
        matching = Profile.objects.filter(pk__in=rules_matching_profiles(segment.rules, now=now))
        with transaction.atomic():
            if timeout_ms:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('statement_timeout', %s, true)", [f"{timeout_ms}ms"]
                    )
            result.count = matching.count()
            if sample:
                result.sample = list(
                    matching.order_by("pk").only("pk", "email", "user_id")[:DRY_RUN_SAMPLE]
                )
    except RulesError as error:
        result.problem = f"The segment's rules are not valid: {error}"
        return result
    except DatabaseError as error:
        if not isinstance(error.__cause__, pg_errors.QueryCanceled):
            raise
        result.count, result.sample = None, []
        result.problem = (
            "Too many to count quickly here. The run itself counts them when it refreshes "
            "the segment; `manage.py retention_dry_run` has no time limit."
        )
        return result
    result.over_brake = result.count > schedule.max_profiles
    return result


def retention_schedule_for(*, segment: Segment) -> RetentionSchedule | None:
    return (
        RetentionSchedule.objects.select_related("last_job", "segment")
        .filter(segment=segment)
        .first()
    )


def retention_page_context(*, schedule: RetentionSchedule, user) -> dict:
    return {
        "schedule": schedule,
        "segment": schedule.segment,
        "can_change": user_can_delete_profiles(user),
        # Members are people: the sample needs profile access, as on the segment page.
        "can_see_profiles": user.has_perm("profiles.view_profile"),
        "dry_run": retention_dry_run(
            schedule=schedule, sample=user.has_perm("profiles.view_profile")
        ),
    }
