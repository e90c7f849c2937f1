import pytest
from django.contrib.auth.models import Group

pytestmark = pytest.mark.django_db


def codenames(group_name):
    return set(Group.objects.get(name=group_name).permissions.values_list("codename", flat=True))


def test_viewers_can_view_and_nothing_else():
    perms = codenames("Viewers")
    assert {"view_segment", "view_profile", "view_campaign", "view_messageactivity"} <= perms
    assert all(p.startswith("view_") for p in perms)


def test_editors_can_view_and_change_segments_profiles_and_messaging():
    perms = codenames("Editors")
    for model in ("segment", "profile", "event", "campaign", "message"):
        for action in ("view", "add", "change", "delete"):
            assert f"{action}_{model}" in perms


def test_group_membership_grants_the_permissions(alice, bob, charlie):
    assert alice.has_perms(["segments.view_segment", "segments.change_segment"])
    assert bob.has_perm("segments.view_segment")
    assert not bob.has_perm("segments.change_segment")
    assert not charlie.has_perm("segments.view_segment")
