from django.core.management.base import BaseCommand, CommandError

from segments.deletion.checks import deletion_verify
from segments.models import DeletionJob


class Command(BaseCommand):
    help = (
        "Check a deletion job against the database: its snapshot profiles and their rows "
        "are gone, kept rows are anonymized, and its counters agree. Exits 1 on a failure."
    )

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int)

    def handle(self, *args, job_id: int, **options):
        job = DeletionJob.objects.filter(pk=job_id).first()
        if job is None:
            raise CommandError(f"There is no deletion job {job_id}.")
        report = deletion_verify(job=job)
        job = report.job
        self.stdout.write(
            f"{job} ({job.get_status_display().lower()}): {job.handled:,} of {job.total:,} "
            f"handled, {job.deleted:,} deleted, {job.skipped:,} skipped, cursor {job.cursor}."
        )
        for finding in report.findings:
            mark = self.style.SUCCESS("ok  ") if finding.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark}  {finding.check}: {finding.detail}")
        if not report.ok:
            raise CommandError(
                f"{len(report.failures)} of {len(report.findings)} checks failed.", returncode=1
            )
        self.stdout.write(self.style.SUCCESS("Every check passed."))
