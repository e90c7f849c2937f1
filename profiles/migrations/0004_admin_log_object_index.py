"""An index on Django admin's log by (content type, object id).

Erasure rewrites the log entries about each batch's rows (see
profiles.erasure), and verify_deletion reads them; both look entries up by
content type and object id, which Django does not index (only the content
type). Without it every batch would scan all entries about profiles.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("profiles", "0003_event_profile_single_index"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS profiles_admin_log_object_idx "
            "ON django_admin_log (content_type_id, object_id)",
            reverse_sql="DROP INDEX IF EXISTS profiles_admin_log_object_idx",
        )
    ]
