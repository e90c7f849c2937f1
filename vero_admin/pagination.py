"""Keyset pagination: pages addressed by the last id seen, never by OFFSET.

A page of a million-row table costs the same as the first page, and no
COUNT(*) is needed to render it.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import QueryDict


@dataclass
class KeysetPage:
    object_list: list
    next_after: int | None
    is_first: bool
    query: QueryDict

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self):
        return len(self.object_list)

    @property
    def has_next(self):
        return self.next_after is not None

    def next_query(self):
        params = self.query.copy()
        params["after"] = str(self.next_after)
        return params.urlencode()

    def first_query(self):
        params = self.query.copy()
        params.pop("after", None)
        return params.urlencode() if params else urlencode({})


def parse_after(request) -> int | None:
    raw = request.GET.get("after", "")
    if raw.isdigit():
        return int(raw)
    return None


def keyset_page(queryset, request, *, key="pk", per_page=50) -> KeysetPage:
    """Return the page after ``?after=<id>``, ordered by ``key`` ascending."""
    after = parse_after(request)
    if after is not None:
        queryset = queryset.filter(**{f"{key}__gt": after})
    rows = list(queryset.order_by(key)[: per_page + 1])
    has_more = len(rows) > per_page
    rows = rows[:per_page]
    next_after = None
    if has_more:
        last = rows[-1]
        next_after = getattr(last, key if key != "pk" else "pk")
    return KeysetPage(rows, next_after, after is None, request.GET)
