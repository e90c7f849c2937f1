from django.db import migrations, models


class Migration(migrations.Migration):
    """API keys get a scope. Keys that exist already could do everything, and
    clients rely on that: they become "full". New keys default to "track"."""

    dependencies = [("profiles", "0006_suppression")]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scope",
            field=models.CharField(
                choices=[("track", "Track only"), ("full", "Full access")],
                default="full",
                max_length=10,
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="apikey",
            name="scope",
            field=models.CharField(
                choices=[("track", "Track only"), ("full", "Full access")],
                default="track",
                help_text=(
                    "Track only: identify, track and batch calls (Vero users/track and "
                    "events/track, Segment /v1/identify, /v1/track, /v1/batch). The one to embed "
                    "in a website or app. Full access: also edit, tags, reidentify, unsubscribe, "
                    "resubscribe and delete; keep it on a server, never in a browser."
                ),
                max_length=10,
            ),
        ),
    ]
