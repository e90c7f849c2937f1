"""What the segment builder's pickers offer: the custom attributes profiles
have (with the type of value each holds), the event names tracked, the topics.

Listing them exactly at a million profiles would unpack every profile's
attributes (seconds), so:

- **attribute names** come from a sample of the profiles table: about
  ``SAMPLE_PAGES`` pages read with ``TABLESAMPLE SYSTEM`` (every profile when
  there are at most ``FULL_SCAN_ROWS``). An attribute most profiles have is always listed; one a
  few people have may be missing, and can be typed in. Names used by saved
  segments are listed too. Each name's type is the kind of value the sample
  holds most often (a text that starts ``YYYY-MM-DD`` is a date);
- **event names and topics** are exact: a loose index scan walks the
  ``(name, occurred_at)`` / ``(topic, subscribed)`` index from one distinct
  value to the next, one index probe per name.

The lists are cached for ``CACHE_SECONDS`` in Django's cache, so a new
attribute or event name shows up in the pickers within that time. Only names
and types are kept, never a value.
"""

import logging
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection

from segments.counting import TookTooLong, with_statement_timeout
from segments.models import Segment

logger = logging.getLogger(__name__)

CACHE_KEY = "segments:builder-catalogue:v1"
CACHE_SECONDS = 300
SAMPLE_PAGES = 300
# Up to this many profiles, every one is read (a few milliseconds).
FULL_SCAN_ROWS = 20_000
MAX_NAMES = 500
TIMEOUT_MS = 2000

_ATTRIBUTES_SQL = """
SELECT key, kind, count(*) AS seen FROM (
  SELECT e.key, CASE jsonb_typeof(e.value)
      WHEN 'number' THEN 'number'
      WHEN 'boolean' THEN 'boolean'
      WHEN 'string' THEN
        CASE WHEN e.value #>> '{{}}' ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}' THEN 'date' ELSE 'text' END
    END AS kind
  FROM profiles_profile p {sample},
    jsonb_each(CASE WHEN jsonb_typeof(p.properties) = 'object'
                    THEN p.properties ELSE '{{}}'::jsonb END) e
) keys
WHERE kind IS NOT NULL
GROUP BY key, kind
"""
_DISTINCT_SQL = """
WITH RECURSIVE names(name) AS (
  (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)
  UNION ALL
  SELECT (SELECT t.{column} FROM {table} t WHERE t.{column} > names.name
          ORDER BY t.{column} LIMIT 1)
  FROM names WHERE names.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL LIMIT %s
"""


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  # text, number, date or boolean


@dataclass(frozen=True)
class Catalogue:
    attributes: tuple[Attribute, ...] = ()
    events: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()

    def kind_of(self, name: str) -> str | None:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.kind
        return None


def catalogue_get() -> Catalogue:
    """The pickers' lists, from the cache when it has them."""
    catalogue = cache.get(CACHE_KEY)
    if catalogue is None:
        catalogue = catalogue_build()
        cache.set(CACHE_KEY, catalogue, CACHE_SECONDS)
    return catalogue


def catalogue_build() -> Catalogue:
    """Read the lists from the database; each read gives up after
    ``TIMEOUT_MS`` and leaves its list empty (names can still be typed)."""
    attributes = _attributes()
    return Catalogue(
        attributes=attributes,
        events=tuple(_distinct("profiles_event", "name")),
        topics=tuple(_distinct("profiles_subscriptionpreference", "topic")),
    )


def _attributes() -> tuple[Attribute, ...]:
    seen: dict[str, dict[str, int]] = {}
    for key, kind, count in _read(_attributes_sql()):
        seen.setdefault(key, {})[kind] = count
    kinds = {key: max(counts, key=counts.get) for key, counts in seen.items()}
    for key in _segment_attribute_names():
        kinds.setdefault(key, None)
    names = sorted(kinds, key=str.casefold)[:MAX_NAMES]
    return tuple(Attribute(name, kinds[name] or "text") for name in names)


def _attributes_sql() -> tuple[str, list]:
    """All profiles when there are few; else a sample of about SAMPLE_PAGES
    pages. "Few" is counted in live rows, not pages: a table that shrank
    (deleted profiles, not yet vacuumed) keeps its pages, and a sample of
    mostly empty pages would miss the profiles that are there."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_relation_size('profiles_profile') / current_setting('block_size')::int, "
            "(SELECT count(*) FROM (SELECT 1 FROM profiles_profile LIMIT %s) few)",
            [FULL_SCAN_ROWS + 1],
        )
        pages, rows = cursor.fetchone()
    if pages <= SAMPLE_PAGES or rows <= FULL_SCAN_ROWS:
        return _ATTRIBUTES_SQL.format(sample=""), []
    percent = 100.0 * SAMPLE_PAGES / pages
    return _ATTRIBUTES_SQL.format(sample="TABLESAMPLE SYSTEM (%s) REPEATABLE (1)"), [percent]


def _distinct(table: str, column: str) -> list[str]:
    sql = _DISTINCT_SQL.format(table=table, column=column)
    return [name for (name,) in _read((sql, [MAX_NAMES]))]


def _read(query) -> list[tuple]:
    sql, params = query

    def read():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    try:
        return with_statement_timeout(TIMEOUT_MS, read)
    except TookTooLong:
        logger.warning("A picker list of the builder took over %s ms; left empty.", TIMEOUT_MS)
        return []


def _segment_attribute_names() -> list[str]:
    names = []
    for rules in Segment.objects.values_list("rules", flat=True):
        for node in _conditions(rules):
            name = node.get("field")
            is_attribute = node.get("type") == "property" and isinstance(name, str)
            if is_attribute and name.strip() and name not in ("email", "user_id"):
                names.append(name)
    return names


def _conditions(rules):
    if not isinstance(rules, dict) or not isinstance(rules.get("conditions"), list):
        return
    for node in rules["conditions"]:
        if isinstance(node, dict):
            yield node
            if isinstance(node.get("conditions"), list):
                yield from (c for c in node["conditions"] if isinstance(c, dict))
