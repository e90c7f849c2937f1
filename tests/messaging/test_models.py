import pytest

from messaging.models import Message, MessageActivity
from profiles.models import Profile

pytestmark = pytest.mark.django_db


def test_messages_and_activity_name_the_fields_erasure_must_clear():
    assert Message.PERSONAL_FIELDS == ("recipient_email",)
    assert set(MessageActivity.PERSONAL_FIELDS) == {"ip_address", "user_agent"}


def test_every_relation_to_profile_says_what_erasure_does():
    """Erasure deletes CASCADE rows and unlinks SET_NULL rows; anything else
    (PROTECT, DO_NOTHING) would make it fail or leave data behind."""
    from django.db import models

    for relation in Profile._meta.related_objects:
        assert relation.on_delete in (models.CASCADE, models.SET_NULL), relation
