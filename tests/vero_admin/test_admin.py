import pytest
from django.contrib import admin
from django.urls import reverse

from tests.messaging.factories import MessageActivityFactory
from tests.profiles.factories import EventFactory, SubscriptionPreferenceFactory
from tests.segments.factories import SegmentMembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def some_rows():
    EventFactory()
    SubscriptionPreferenceFactory()
    SegmentMembershipFactory()
    MessageActivityFactory()


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label_lower)
def test_every_registered_changelist_renders(client, admin_user, some_rows, model):
    client.force_login(admin_user)
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "example"}).status_code == 200


def test_the_admin_refuses_non_staff(editor_client):
    response = editor_client.get("/admin/")
    assert response.status_code == 302
