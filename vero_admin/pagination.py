"""Keyset pagination: pages addressed by the first or last id seen, never by OFFSET.

A page of a million-row table costs the same as the first page. Where the
page is (``?page=N``) is carried in the link for the label only ("Profiles
51-100"); the rows come from the cursor. Totals are counted only when that is
cheap (see ``Total``).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.humanize.templatetags.humanize import intcomma, intword
from django.db import connection
from django.http import QueryDict

from vero_admin.query import query_whole_number

MAX_PAGE_NUMBER = 10**9
COUNT_CAP = 10_000
# A search counts its matches up to here: past it, a common word's count
# would cost more than the page itself (0.3 s at 10,000 members, 1M profiles).
SEARCH_COUNT_CAP = 1_000
# Query-string parameters that address a page; every other one (the search)
# is kept by the pager's links.
CURSOR_PARAMS = ("after", "before", "older", "page")


@dataclass(frozen=True)
class Total:
    """How many rows a list has: exact, an estimate, or "more than" a cap."""

    value: int
    exact: bool = True
    more_than: bool = False

    def __str__(self):
        if self.more_than:
            return f"more than {intcomma(self.value)}"
        if self.exact:
            return intcomma(self.value)
        return f"about {_rounded(self.value)}"


def _rounded(value: int) -> str:
    if value >= 1_000_000:
        return intword(round(value, -5))
    if value >= 100:
        digits = len(str(value)) - 2  # two significant figures
        return intcomma(round(value, -digits))
    return intcomma(value)


def count_capped(queryset, *, cap: int = COUNT_CAP) -> Total:
    """Count at most ``cap + 1`` rows: exact up to ``cap``, "more than cap" after.
    The work stops at the cap, whatever the size of the table."""
    found = queryset.order_by().values("pk")[: cap + 1].count()
    if found > cap:
        return Total(cap, exact=False, more_than=True)
    return Total(found)


def table_total(model, *, cap: int = COUNT_CAP) -> Total:
    """All rows of ``model``'s table: exact while the table is small, else
    PostgreSQL's own estimate (``pg_class.reltuples``, kept by ANALYZE and
    autovacuum), labelled as one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    estimate = row[0] if row else -1
    if estimate > cap:
        return Total(estimate, exact=False)
    # Small, or statistics not gathered yet: count (at most the cap).
    return count_capped(model._default_manager.all(), cap=cap)


@dataclass
class KeysetPage:
    object_list: list
    number: int
    per_page: int
    query: QueryDict
    next_after: int | None = None
    previous_before: int | None = None
    total: Total | None = None
    noun: str = ""
    extra_next: dict = field(default_factory=dict)

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self):
        return len(self.object_list)

    @property
    def is_first(self) -> bool:
        return self.number == 1

    @property
    def has_next(self) -> bool:
        return self.next_after is not None or bool(self.extra_next)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_previous_link(self) -> bool:
        """A "Previous" link needs a cursor, but for the second page."""
        return self.number == 2 or (self.number > 2 and self.previous_before is not None)

    @property
    def start_index(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.object_list else 0

    @property
    def end_index(self) -> int:
        return self.start_index + len(self.object_list) - 1 if self.object_list else 0

    @property
    def num_pages(self) -> int | None:
        """The number of pages, when the total is exact."""
        if self.total is None or not self.total.exact:
            return None
        return max(1, math.ceil(self.total.value / self.per_page))

    def _with(self, **changes) -> str:
        params = self.query.copy()
        for key in CURSOR_PARAMS:
            params.pop(key, None)
        for key, value in changes.items():
            params[key] = str(value)
        return params.urlencode()

    def next_query(self) -> str:
        cursor = self.extra_next or {"after": self.next_after}
        return self._with(**cursor, page=self.number + 1)

    def previous_query(self) -> str:
        if self.number <= 2 or self.previous_before is None:
            return self.first_query()
        return self._with(before=self.previous_before, page=self.number - 1)

    def first_query(self) -> str:
        return self._with()


def _cursor(request, name) -> int | None:
    """A cursor (an id), or None when absent; 400 (``BadQuery``) when it is
    not ASCII digits in the bigint range."""
    return query_whole_number(request, name)


def parse_after(request) -> int | None:
    return _cursor(request, "after")


def page_number(request) -> int:
    """The page number in the link, for the label; 2 when it is missing or 1
    (it is only read when a cursor says this is not the first page); 400
    when it is not a page number."""
    number = query_whole_number(request, "page", minimum=1, maximum=MAX_PAGE_NUMBER)
    return 2 if number is None or number < 2 else number


def keyset_page(
    queryset,
    request,
    *,
    key="pk",
    per_page=50,
    total: Total | Callable[[], Total] | None = None,
    noun: str = "",
) -> KeysetPage:
    """The page after ``?after=<id>`` (or before ``?before=<id>``), ordered by
    ``key`` ascending. A cursor or page number that is not one answers 400
    (``vero_admin.query.BadQuery``).

    ``total`` may be a function that counts: it is not called when the first
    page holds every row (its length is the total)."""
    after, before = parse_after(request), _cursor(request, "before")
    page_number(request)  # checked on every page, read only past the first
    attribute = "pk" if key == "pk" else key
    number = 1
    if before is not None:
        rows = list(queryset.filter(**{f"{key}__lt": before}).order_by(f"-{key}")[: per_page + 1])
        if len(rows) > per_page:  # there is a page before these: not the first
            rows = rows[:per_page][::-1]
            number = page_number(request)
            next_exists = queryset.filter(**{f"{key}__gt": getattr(rows[-1], attribute)}).exists()
            return KeysetPage(
                rows,
                number,
                per_page,
                request.GET,
                next_after=getattr(rows[-1], attribute) if next_exists else None,
                previous_before=getattr(rows[0], attribute),
                total=total() if callable(total) else total,
                noun=noun,
            )
        after = None  # reached the start: show the first page, full
    elif after is not None:
        queryset = queryset.filter(**{f"{key}__gt": after})
        number = page_number(request)
    rows = list(queryset.order_by(key)[: per_page + 1])
    has_more = len(rows) > per_page
    rows = rows[:per_page]
    if callable(total):
        total = Total(len(rows)) if number == 1 and not has_more else total()
    return KeysetPage(
        rows,
        number,
        per_page,
        request.GET,
        next_after=getattr(rows[-1], attribute) if has_more else None,
        previous_before=getattr(rows[0], attribute) if rows and number > 1 else None,
        total=total,
        noun=noun,
    )
