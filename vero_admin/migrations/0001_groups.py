"""The two access levels admins hand out in Django admin: Viewers and Editors."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APPS = ("profiles", "messaging", "segments")
GROUPS = {
    "Viewers": ("view",),
    "Editors": ("view", "add", "change", "delete"),
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate);
    # create them now so the groups can hold them on a fresh database.
    for label in APPS:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, actions in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(content_type__app_label__in=APPS).filter(
            codename__regex=r"^(%s)_" % "|".join(actions)
        )
        group.permissions.add(*perms)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("profiles", "0001_initial"),
        ("messaging", "0001_initial"),
        ("segments", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
