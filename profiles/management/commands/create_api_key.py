from django.core.management.base import BaseCommand, CommandError

from profiles.services import api_key_create


class Command(BaseCommand):
    help = "Create an ingestion API key and print it; the key alone is the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'Website (Segment)'.")

    def handle(self, *args, name: str, **options):
        name = name.strip()
        if not name:
            raise CommandError("Give the key a name.")
        if len(name) > 100:
            raise CommandError("The name must be at most 100 characters.")
        api_key, raw_key = api_key_create(name=name)
        self.stdout.write(
            f"Created API key {api_key.name!r} (prefix {api_key.prefix}). "
            "It is stored hashed and will not be shown again:"
        )
        self.stdout.write(raw_key)
