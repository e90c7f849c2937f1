"""Live counts for the segment builder: how many profiles match each row,
and all of them, with a few of them as a sample.

One statement counts everything at once, ``count(*) FILTER (WHERE ...)`` per
row and for the whole, so a million profiles are read once, not once per
row. It runs under ``EXACT_TIMEOUT_MS`` of statement timeout; when that is
not enough, the same statement over a sample of the table's pages
(``TABLESAMPLE SYSTEM ... REPEATABLE``, so the figure does not jitter from
one keystroke to the next) gives an estimate, which is always labelled as
one. If even the estimate takes over ``ESTIMATE_TIMEOUT_MS``, the count is
"not known". No request holds a connection longer than the sum of the
timeouts, and a count never blocks a write (it only reads).
"""

import datetime
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from django.db import OperationalError, connection, transaction
from django.utils import timezone
from psycopg.errors import QueryCanceled

from profiles.models import Profile
from segments.builder import Builder, builder_attribute_names
from segments.rules import rules_compile, rules_describe

logger = logging.getLogger(__name__)

EXACT_TIMEOUT_MS = 600
ESTIMATE_TIMEOUT_MS = 300
SAMPLE_TIMEOUT_MS = 300
SAMPLE_PAGES = 400
SAMPLE_SIZE = 8
MAX_COLUMNS = 4

T = TypeVar("T")


class TookTooLong(Exception):
    """A statement ran into its statement timeout."""


def with_statement_timeout(milliseconds: int, read: Callable[[], T]) -> T:
    """``read()`` in a transaction whose statements give up after ``milliseconds``.

    Raises TookTooLong when they do. ``SET LOCAL`` lasts until the end of
    the transaction, so inside an outer one (a test) the previous value is
    put back.
    """
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            previous = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])
            result = read()
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
            return result
    except OperationalError as error:
        if isinstance(error.__cause__, QueryCanceled):
            raise TookTooLong from error
        raise


@dataclass(frozen=True)
class Count:
    """A number of profiles: exact, an estimate ("about"), an upper bound
    when the sample found nobody ("under about"), or not known (``value``
    None). Pages show ``text``; an estimate never reads as exact."""

    value: int | None
    exact: bool = True
    under: bool = False

    @property
    def text(self) -> str:
        if self.value is None:
            return "not known"
        if self.exact:
            return f"{self.value:,}"
        return f"{'under about' if self.under else 'about'} {self.value:,}"

    @property
    def people(self) -> str:
        if self.value is None:
            return "an unknown number of people"
        return f"{self.text} {'person' if self.value == 1 and self.exact else 'people'}"

    @property
    def sentence(self) -> str:
        if self.value is None:
            return "Counting took too long: the segment is counted exactly when you save it."
        if not self.exact:
            return (
                f"{self.people.capitalize()} match these rules "
                "(an estimate from a sample: counting every profile took too long)."
            )
        verb = "matches" if self.value == 1 else "match"
        return f"{self.people} {verb} these rules."


NOT_KNOWN = Count(None, exact=False)


def rules_counts(parts: dict[str, dict], *, now: datetime.datetime | None = None):
    """The number of profiles each of ``parts`` (valid rules) selects, by name."""
    if not parts:
        return {}
    now = now or timezone.now()
    names = list(parts)
    wheres, params = [], []
    for name in names:
        sql, where_params = _where(rules_compile(parts[name], now=now))
        wheres.append(sql)
        params.extend(where_params)
    # The fragments come from Django's compiler; every user value is in params.
    counts = ", ".join(f"count(*) FILTER (WHERE {where})" for where in wheres)
    exact = f"SELECT {counts} FROM profiles_profile"  # noqa: S608
    try:
        row = with_statement_timeout(EXACT_TIMEOUT_MS, lambda: _fetch(exact, params))
        return {name: Count(value) for name, value in zip(names, row, strict=True)}
    except TookTooLong:
        logger.info("Builder count over %s ms; estimating from a sample.", EXACT_TIMEOUT_MS)
    try:
        return dict(zip(names, _estimate(counts, params), strict=True))
    except TookTooLong:
        logger.info("Builder estimate over %s ms too.", ESTIMATE_TIMEOUT_MS)
        return dict.fromkeys(names, NOT_KNOWN)


def _where(q) -> tuple[str, list]:
    """The filter as SQL over "profiles_profile", with its parameters."""
    query = Profile.objects.all().query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.compile(query.build_where(q))
    return sql, list(params)


def _fetch(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _estimate(counts: str, params: list) -> list[Count]:
    def read():
        pages, total = _fetch(
            "SELECT pg_relation_size('profiles_profile') / current_setting('block_size')::int,"
            " reltuples FROM pg_class WHERE oid = 'profiles_profile'::regclass",
            [],
        )
        percent = min(100.0, 100.0 * SAMPLE_PAGES / max(pages, 1))
        sampled = f"SELECT count(*), {counts} FROM profiles_profile"  # noqa: S608
        row = _fetch(f"{sampled} TABLESAMPLE SYSTEM (%s) REPEATABLE (7)", [*params, percent])
        return percent, total, row

    percent, total, (sampled, *matches) = with_statement_timeout(ESTIMATE_TIMEOUT_MS, read)
    if total <= 0:  # never analysed: scale the sample up instead
        total = sampled * 100.0 / percent
    if not sampled:
        return [NOT_KNOWN for _ in matches]
    return [_scaled(found, sampled, total) for found in matches]


def _scaled(found: int, sampled: int, total: float) -> Count:
    if found == 0:
        # The rule of three: with none of n sampled, the share is under 3/n (95%).
        return Count(_round(3 * total / sampled), exact=False, under=True)
    return Count(_round(found * total / sampled), exact=False)


def _round(value: float) -> int:
    """Two significant figures: an estimate should not look precise."""
    if value < 100:
        return max(1, round(value))
    digits = math.floor(math.log10(value)) - 1
    return int(round(value, -digits))


# The builder's preview ---------------------------------------------------------


@dataclass
class Preview:
    """What the builder shows under the rows: the count of the whole, the
    rules in plain words, and a few members (``sample`` is None when finding
    them took too long)."""

    total: Count | None = None
    words: object = None
    columns: list[str] = field(default_factory=list)
    sample: list[dict] | None = None
    sample_hidden: bool = False  # the user may not see profiles


def builder_preview(builder: Builder, *, sample: bool = True) -> Preview:
    """Count each valid row (setting ``row.count``) and, when every row is
    valid, the whole; with a sample of the members unless ``sample`` is
    False (a user without profile access sees counts, not people)."""
    now = timezone.now()
    parts = {
        row.prefix: {"match": "all", "conditions": [row.condition]}
        for row in builder.all_rows()
        if row.is_valid and row.condition is not None
    }
    if builder.is_valid:
        parts["total"] = builder.rules
    counts = rules_counts(parts, now=now)
    for row in builder.all_rows():
        row.count = counts.get(row.prefix)
    preview = Preview(total=counts.get("total"))
    if builder.is_valid:
        preview.words = rules_describe(builder.rules)
        preview.columns = builder_attribute_names(builder)[:MAX_COLUMNS]
        if not sample:
            preview.sample_hidden = True
        elif preview.total.value != 0:
            preview.sample = _sample(builder.rules, preview.columns, now)
    return preview


def _sample(rules, columns, now) -> list[dict] | None:
    """A few members, newest first, with the attributes the rules use (as
    lists, so no attribute name is ever read as a template lookup)."""
    members = Profile.objects.filter(rules_compile(rules, now=now)).order_by("-pk")
    members = members.only("pk", "email", "user_id", "properties")[:SAMPLE_SIZE]
    try:
        profiles = with_statement_timeout(SAMPLE_TIMEOUT_MS, lambda: list(members))
    except TookTooLong:
        return None
    return [
        {
            "profile": profile,
            "values": [_shown(profile.properties, name) for name in columns],
        }
        for profile in profiles
    ]


def _shown(properties, name) -> str:
    if not isinstance(properties, dict) or properties.get(name) is None:
        return "—"
    value = properties[name]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
