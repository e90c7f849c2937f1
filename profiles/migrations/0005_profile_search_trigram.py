"""A trigram index for searching profiles by any part of their email, user id
or attribute values (profiles.selectors.profile_search).

The indexed text comes from one SQL function, ``profile_search_text``, so the
index and the query name the very same expression (the planner only uses an
expression index for a query that repeats its expression). The function is
IMMUTABLE (its result depends on its arguments only) and a single expression,
which the planner inlines: a body with a subquery (string_agg over the values)
cost four times as much per row, paid again for every row the index finds. Attribute values are
taken at every depth, strings and numbers only: keys are not searched (a
search for "country" would otherwise find everyone), nor true/false/null.

The index is built ``CONCURRENTLY`` (outside a transaction), so migrating a
live database does not block ingestion while a million rows are indexed.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

SEARCH_TEXT_FUNCTION = """
CREATE OR REPLACE FUNCTION profile_search_text(email text, user_id text, properties jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(email, '') || ' ' || coalesce(user_id, '') || ' ' || coalesce(
    jsonb_path_query_array(
        properties, 'strict $.** ? (@.type() == "string" || @.type() == "number")'
    )::text,
    '')
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("profiles", "0004_admin_log_object_index"),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunSQL(
            SEARCH_TEXT_FUNCTION,
            reverse_sql="DROP FUNCTION IF EXISTS profile_search_text(text, text, jsonb)",
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS profile_search_trgm_idx ON profiles_profile "
            "USING gin (profile_search_text(email, user_id, properties) gin_trgm_ops)",
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS profile_search_trgm_idx",
        ),
    ]
