import importlib
import os

import pytest
from django.contrib.auth.models import Group, Permission, User

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """One test database per pytest process, so two runs on one server
    (two terminals, or CI beside a developer) never share or drop each other's."""
    from django.conf import settings

    test = settings.DATABASES["default"].setdefault("TEST", {})
    if not os.environ.get("TEST_DATABASE_NAME"):
        test["NAME"] = f"test_{settings.DATABASES['default']['NAME']}_{os.getpid()}"


GROUPS_MIGRATION = importlib.import_module("vero_admin.migrations.0001_groups")


def _group(name):
    """The group as the migration made it. A transactional test ends with a
    flush, which empties auth_group; post_migrate brings the permissions back,
    but not the groups a data migration created."""
    group, created = Group.objects.get_or_create(name=name)
    if created:
        migration = GROUPS_MIGRATION
        group.permissions.set(
            Permission.objects.filter(content_type__app_label__in=migration.APPS).filter(
                codename__regex=rf"^({'|'.join(migration.GROUPS[name])})_"
            )
        )
    return group


@pytest.fixture(autouse=True)
def _groups_as_migrated(django_db_setup, django_db_blocker):
    """Every test starts with the groups the migration made, even after a
    transactional test's flush (pytest-django runs those last, but live-server
    tests are among them, and anything after them would find no groups)."""
    with django_db_blocker.unblock():
        if Group.objects.filter(name__in=GROUPS_MIGRATION.GROUPS).count() < len(
            GROUPS_MIGRATION.GROUPS
        ):
            for name in GROUPS_MIGRATION.GROUPS:
                _group(name)


@pytest.fixture(autouse=True)
def receipts_dir(tmp_path, settings, monkeypatch):
    """Each test writes deletion receipts to a directory of its own (and so
    do the worker clusters it starts, which read the environment): job ids
    repeat between test databases, and a file left by another test would
    be read as this job's."""
    directory = tmp_path / "deletion-receipts"
    settings.DELETION_RECEIPTS_DIR = directory
    monkeypatch.setenv("DELETION_RECEIPTS_DIR", str(directory))
    return directory


def _user(username, *groups, **extra):
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)
    for name in groups:
        user.groups.add(_group(name))
    return user


@pytest.fixture
def alice(db):
    """An editor: View and Edit access."""
    return _user("alice", "Editors")


@pytest.fixture
def bob(db):
    """A viewer: View access only."""
    return _user("bob", "Viewers")


@pytest.fixture
def charlie(db):
    """Logged in, but in no group: no access to anything."""
    return _user("charlie")


@pytest.fixture
def admin_user(db):
    return _user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def editor_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def viewer_client(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def outsider_client(client, charlie):
    client.force_login(charlie)
    return client


# Browser tests: Debian's Chromium, never a downloaded browser.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": CHROMIUM_ARGS,
    }
