from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from segments.deletion.reapply import deletions_reapply
from segments.deletion.receipts import ReceiptUnreadable, receipt_files


class Command(BaseCommand):
    help = (
        "After restoring a backup: erase again every profile whose user id or email digest "
        "is listed in a deletion receipt file (default: every receipt in "
        "DELETION_RECEIPTS_DIR), through the same erasure as a deletion job, and put back "
        "their suppressions. Running it twice changes nothing the second time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "receipts", nargs="*", type=Path, metavar="RECEIPT", help="receipt files (JSON)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be erased; change nothing"
        )

    def handle(self, *args, receipts: list[Path], dry_run: bool, **options):
        paths = receipts or receipt_files()
        if not paths:
            raise CommandError(
                f"No receipt files in {settings.DELETION_RECEIPTS_DIR} (DELETION_RECEIPTS_DIR)."
            )
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CommandError(f"No such receipt file: {', '.join(missing)}")
        try:
            result = deletions_reapply(
                paths=paths,
                dry_run=dry_run,
                progress=lambda line: self.stdout.write(line) if options["verbosity"] > 1 else None,
            )
        except ReceiptUnreadable as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        for found in result.receipts:
            job = f"job {found.job}" if found.job is not None else "unknown job"
            self.stdout.write(
                f"{found.path.name} ({job}, segment {found.segment!r}): {found.listed:,} "
                f"profiles listed, {found.present:,} of them here"
                + (", suppressed" if found.suppressed else "")
                + "."
            )
        if dry_run:
            self.stdout.write(
                f"Dry run: would erase {result.to_erase:,} profiles and add "
                f"{result.suppressions_added:,} suppressions. Nothing was changed."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Erased {result.erased:,} profiles ({result.skipped:,} already gone) and added "
                f"{result.suppressions_added:,} suppressions."
            )
        )
