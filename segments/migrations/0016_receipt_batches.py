"""A receipt's entries: one row a batch (two arrays of digests in step),
instead of one row a profile. Existing entries are copied over in chunks of
5,000 in the order they were written, so every receipt reads the same."""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

TO_BATCHES = """
INSERT INTO segments_deletionreceiptbatch (job_id, user_id_sha256, email_sha256)
SELECT job_id, array_agg(user_id_sha256 ORDER BY id), array_agg(email_sha256 ORDER BY id)
FROM (SELECT id, job_id, user_id_sha256, email_sha256,
             (row_number() OVER (PARTITION BY job_id ORDER BY id) - 1) / 5000 AS chunk
      FROM segments_deletionreceiptentry) e
GROUP BY job_id, chunk
ORDER BY job_id, chunk
"""

TO_ENTRIES = """
INSERT INTO segments_deletionreceiptentry (job_id, user_id_sha256, email_sha256)
SELECT b.job_id, d.u, d.e
FROM segments_deletionreceiptbatch b,
     unnest(b.user_id_sha256, b.email_sha256) WITH ORDINALITY AS d(u, e, n)
ORDER BY b.id, d.n
"""

# Digests do not compress: pglz would try on every insert, for nothing.
UNCOMPRESSED = (
    "ALTER TABLE segments_deletionreceiptbatch "
    "ALTER COLUMN user_id_sha256 SET STORAGE EXTERNAL, "
    "ALTER COLUMN email_sha256 SET STORAGE EXTERNAL"
)


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0015_deletion_runner"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeletionReceiptBatch",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "user_id_sha256",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=64, null=True), size=None
                    ),
                ),
                (
                    "email_sha256",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=64, null=True), size=None
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="receipt_batches",
                        to="segments.deletionjob",
                    ),
                ),
            ],
            options={
                "verbose_name": "deletion receipt batch",
                "verbose_name_plural": "deletion receipt batches",
            },
        ),
        migrations.RunSQL(UNCOMPRESSED, migrations.RunSQL.noop),
        migrations.RunSQL(TO_BATCHES, TO_ENTRIES),
        migrations.DeleteModel(
            name="DeletionReceiptEntry",
        ),
    ]
