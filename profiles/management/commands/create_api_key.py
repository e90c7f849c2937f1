from django.core.management.base import BaseCommand, CommandError

from profiles.models import ApiKey
from profiles.services import api_key_create


class Command(BaseCommand):
    help = (
        "Create an ingestion API key and print it; the key alone is the last line. "
        "--scope track for a key a website or app embeds (identify, track, batch only); "
        "--scope full for a server (also edit, tags, reidentify, unsubscribe, resubscribe, "
        "delete)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'Website (Segment)'.")
        parser.add_argument(
            "--scope",
            required=True,
            choices=ApiKey.Scope.values,
            help=(
                "track: identify, track and batch only, the key to embed in a browser; "
                "full: every call, for servers only."
            ),
        )

    def handle(self, *args, name: str, scope: str, **options):
        name = name.strip()
        if not name:
            raise CommandError("Give the key a name.")
        if len(name) > 100:
            raise CommandError("The name must be at most 100 characters.")
        api_key, raw_key = api_key_create(name=name, scope=scope)
        self.stdout.write(
            f"Created API key {api_key.name!r} (prefix {api_key.prefix}, "
            f"{api_key.get_scope_display().lower()}). "
            "It is stored hashed and will not be shown again:"
        )
        self.stdout.write(raw_key)
