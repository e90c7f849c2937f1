import re

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


# Access: one column, one filter, one control, and a description of each group.


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def access_column(html: str, username: str) -> str:
    row = re.search(rf">{username}</a></th>(.*?)</tr>", html, re.S).group(1)
    return re.search(r'<td class="field-access">(.*?)</td>', row).group(1)


def test_the_user_list_has_an_access_column(admin_client, alice, bob, charlie):
    html = admin_client.get("/admin/auth/user/").content.decode()
    assert ">Access<" in html
    assert access_column(html, "alice") == "View and Edit"
    assert access_column(html, "bob") == "View"
    assert access_column(html, "charlie") == "None"
    assert access_column(html, "root") == "Full (superuser)"


@pytest.mark.parametrize(
    "level, expected",
    [("none", {"charlie"}), ("view", {"bob"}), ("edit", {"alice"}), ("full", {"root"})],
)
def test_the_user_list_filters_by_access(admin_client, alice, bob, charlie, level, expected):
    response = admin_client.get("/admin/auth/user/", {"access": level})
    assert {user.username for user in response.context["cl"].result_list} == expected


def test_the_access_filter_offers_the_levels_in_plain_words(admin_client):
    html = admin_client.get("/admin/auth/user/").content.decode()
    assert "By access" in html
    for value, label in [
        ("none", "None"),
        ("view", "View"),
        ("edit", "View and Edit"),
        ("full", "Full (superuser)"),
    ]:
        assert f'href="?access={value}">{label}</a>' in html


def change_data(user, **changes):
    """What the user change page posts when nothing but `changes` is edited."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    if user.is_staff:
        data["is_staff"] = "on"
    data.update(changes)
    return data


def group_names(user):
    return set(user.groups.values_list("name", flat=True))


def test_the_user_page_shows_the_access_control_with_the_current_level(admin_client, bob):
    html = admin_client.get(f"/admin/auth/user/{bob.pk}/change/").content.decode()
    assert "Access to the dashboard" in html
    assert 'type="radio" name="access" value="view"' in html
    assert re.search(r'<input type="radio" name="access" value="view"[^>]*\bchecked', html)
    assert "sees segments, profiles, campaigns" in html


@pytest.mark.parametrize(
    "who, access, groups",
    [
        ("charlie", "edit", {"Editors"}),
        ("charlie", "view", {"Viewers"}),
        ("alice", "view", {"Viewers"}),
        ("bob", "edit", {"Editors"}),
        ("bob", "none", set()),
    ],
)
def test_the_access_control_puts_the_user_in_the_right_group(
    admin_client, alice, bob, charlie, who, access, groups
):
    user = {"alice": alice, "bob": bob, "charlie": charlie}[who]
    response = admin_client.post(
        f"/admin/auth/user/{user.pk}/change/", change_data(user, access=access)
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert group_names(user) == groups


def test_the_access_control_keeps_the_users_other_groups(admin_client, bob):
    from django.contrib.auth.models import Group

    bob.groups.add(Group.objects.create(name="Newsletter team"))
    admin_client.post(f"/admin/auth/user/{bob.pk}/change/", change_data(bob, access="edit"))
    assert group_names(bob) == {"Editors", "Newsletter team"}


def test_an_unchanged_access_control_leaves_the_groups_widget_in_charge(admin_client, bob):
    from django.contrib.auth.models import Group

    editors = Group.objects.get(name="Editors")
    data = change_data(bob, access="view", groups=[str(editors.pk)])
    admin_client.post(f"/admin/auth/user/{bob.pk}/change/", data)
    assert group_names(bob) == {"Editors"}


def test_a_superuser_is_shown_with_full_access_that_the_control_cannot_change(
    admin_client, admin_user
):
    html = admin_client.get(f"/admin/auth/user/{admin_user.pk}/change/").content.decode()
    assert "Full: a superuser can do everything" in html
    assert 'name="access" value="full"' in html and "disabled" in html
    data = change_data(admin_user, access="view", is_superuser="on")
    assert admin_client.post(f"/admin/auth/user/{admin_user.pk}/change/", data).status_code == 302
    assert group_names(admin_user) == set()


def test_a_new_user_can_be_given_access_when_added(admin_client):
    from django.contrib.auth.models import User

    response = admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "dora",
            "usable_password": "true",
            "password1": "a long enough passphrase 42",
            "password2": "a long enough passphrase 42",
            "access": "view",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert group_names(User.objects.get(username="dora")) == {"Viewers"}


def test_staff_who_may_only_view_users_see_the_access_but_cannot_change_it(client, bob):
    from django.contrib.auth.models import Permission

    from tests.conftest import _user

    staff = _user("dave", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(staff)
    page = client.get(f"/admin/auth/user/{bob.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="access"' not in html
    assert "View" in html.split("Access to the dashboard")[1]
    response = client.post(f"/admin/auth/user/{bob.pk}/change/", change_data(bob, access="edit"))
    assert response.status_code == 403
    assert group_names(bob) == {"Viewers"}


def test_staff_without_any_user_permission_cannot_reach_the_user_pages(client, bob):
    from tests.conftest import _user

    staff = _user("erin", is_staff=True)
    client.force_login(staff)
    assert client.get(f"/admin/auth/user/{bob.pk}/change/").status_code == 403
    response = client.post(f"/admin/auth/user/{bob.pk}/change/", change_data(bob, access="edit"))
    assert response.status_code == 403
    assert group_names(bob) == {"Viewers"}


def test_each_access_group_says_what_it_gives(admin_client):
    from django.contrib.auth.models import Group

    html = admin_client.get("/admin/auth/group/").content.decode()
    assert "Gives View access: sees segments" in html
    assert "Gives View and Edit access:" in html
    editors = Group.objects.get(name="Editors")
    page = admin_client.get(f"/admin/auth/group/{editors.pk}/change/").content.decode()
    assert "Gives View and Edit access:" in page
    assert 'name="name"' not in page  # the user pages find the group by its name
