from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from profiles.models import ApiKey
from profiles.selectors import api_key_authenticate

pytestmark = pytest.mark.django_db


def test_it_prints_the_new_key_alone_on_the_last_line():
    out = StringIO()
    call_command("create_api_key", "Website", stdout=out)
    raw_key = out.getvalue().splitlines()[-1]
    api_key = ApiKey.objects.get()
    assert api_key.name == "Website"
    assert api_key_authenticate(raw_key=raw_key) == api_key
    assert raw_key not in api_key.hashed_key


def test_it_refuses_an_empty_name():
    with pytest.raises(CommandError):
        call_command("create_api_key", "  ", stdout=StringIO())
    assert not ApiKey.objects.exists()
