from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from profiles.models import ApiKey, SeenMessage
from profiles.selectors import api_key_authenticate
from profiles.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("scope", ["track", "full"])
def test_create_api_key_prints_the_new_key_alone_on_the_last_line(scope):
    out = StringIO()
    call_command("create_api_key", "Website", "--scope", scope, stdout=out)
    raw_key = out.getvalue().splitlines()[-1]
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.scope) == ("Website", scope)
    assert api_key_authenticate(raw_key=raw_key) == api_key
    assert raw_key not in api_key.hashed_key


def test_create_api_key_refuses_an_empty_name():
    with pytest.raises(CommandError):
        call_command("create_api_key", "  ", "--scope", "track", stdout=StringIO())
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("scope", [None, "admin", ""])
def test_create_api_key_requires_a_known_scope(scope):
    arguments = ["Website"] if scope is None else ["Website", "--scope", scope]
    with pytest.raises(CommandError, match="scope"):
        call_command("create_api_key", *arguments, stdout=StringIO())
    assert not ApiKey.objects.exists()


def test_prune_seen_messages_forgets_old_message_ids():
    api_key, _ = api_key_create(name="k", scope="full")
    SeenMessage.objects.create(
        api_key=api_key, message_id="old", received_at=timezone.now() - timedelta(days=8)
    )
    recent = SeenMessage.objects.create(
        api_key=api_key, message_id="new", received_at=timezone.now()
    )
    out = StringIO()
    call_command("prune_seen_messages", stdout=out)
    assert "Forgot 1 messageIds" in out.getvalue()
    assert list(SeenMessage.objects.all()) == [recent]
