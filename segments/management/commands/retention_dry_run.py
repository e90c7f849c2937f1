from django.core.management.base import BaseCommand
from django.utils import timezone

from segments.models import RetentionSchedule
from segments.retention.selectors import retention_dry_run


class Command(BaseCommand):
    help = (
        "For every retention schedule, print what its next run would delete if it ran now: "
        "how many profiles match the segment's rules, and whether the brake would stop it. "
        "Changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sample",
            type=int,
            default=0,
            help="Also list up to this many of the profiles by id (no email or user id).",
        )

    def handle(self, *args, sample: int, **options):
        schedules = RetentionSchedule.objects.select_related("segment").order_by("segment__name")
        if not schedules:
            self.stdout.write("There are no retention schedules.")
            return
        for schedule in schedules:
            self.stdout.write(self._line(schedule, sample))

    def _line(self, schedule: RetentionSchedule, sample: int) -> str:
        result = retention_dry_run(schedule=schedule, timeout_ms=None)
        head = f"{schedule.segment.name} ({schedule.when_phrase}, "
        if schedule.is_paused:
            head += "paused"
        else:
            head += f"next run {timezone.localtime(schedule.next_run_at):%Y-%m-%d %H:%M %Z}"
        head += f", at most {schedule.max_profiles:,} per run): "
        if result.count is None:
            return head + result.problem
        found = f"{result.count:,} profile{'s' if result.count != 1 else ''} match now"
        if result.rules_changed:
            verdict = "the rules changed since the schedule was confirmed: the run would pause"
        elif result.active_job is not None:
            verdict = f"the run would be skipped: deletion #{result.active_job.pk} is running"
        elif result.over_brake:
            verdict = "more than the limit: the run would delete nobody and pause"
        elif result.count == 0:
            verdict = "the run would delete nobody"
        else:
            verdict = f"the run would delete {'it' if result.count == 1 else 'them'}"
            if schedule.is_paused:
                verdict += " once resumed"
        line = f"{head}{found}; {verdict}."
        if sample and result.sample:
            ids = ", ".join(str(profile.pk) for profile in result.sample[:sample])
            line += f" Profile ids: {ids}."
        return line
