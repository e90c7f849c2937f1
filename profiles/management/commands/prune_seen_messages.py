from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from profiles.ingestion import seen_messages_prune


class Command(BaseCommand):
    help = "Forget Segment messageIds older than --days (default 7); run it daily."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7)

    def handle(self, *args, days: int, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        deleted = seen_messages_prune(before=timezone.now() - timedelta(days=days))
        self.stdout.write(f"Forgot {deleted} messageIds received more than {days} days ago.")
