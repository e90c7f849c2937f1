"""Writes on profiles' records that are not ingestion: API keys."""

import secrets

from django.utils import timezone

from profiles.models import ApiKey

PREFIX_LENGTH = 8


def api_key_create(*, name: str, scope: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its full text, which is stored nowhere.

    The caller shows the text once; afterwards only the prefix identifies it.
    ``scope`` (``ApiKey.Scope``) has no default: whoever makes a key says
    whether it will live in a browser (track) or on a server (full).
    """
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"Unknown API key scope {scope!r}.")
    raw_key = secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name, scope=scope, prefix=raw_key[:PREFIX_LENGTH], hashed_key=ApiKey.hash(raw_key)
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke the key from now on; revoking twice keeps the first date."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
