"""What a page reads from its query string, checked before it is used.

A value a page cannot read answers 400 with a sentence that names the
parameter (``BadQuery``, turned into the 400 page by
``vero_admin.middleware.BadQueryMiddleware``), never a guess: Python's
``int()`` reads ``"١٢"`` as 12 and ``str.isdigit()`` accepts ``"²"``, so a
number here is ASCII digits only, within the range the database holds.
"""

from django.core.exceptions import BadRequest

BIGINT_MAX = 2**63 - 1


class BadQuery(BadRequest):
    """A query-string value a page cannot read. The message is shown on the
    400 page: plain words, naming the parameter, never echoing the value."""


def query_whole_number(request, name: str, *, minimum: int = 0, maximum: int = BIGINT_MAX):
    """``?name=`` as a whole number from ``minimum`` to ``maximum``; None when
    it is absent or empty; BadQuery for anything else."""
    raw = request.GET.get(name, "")
    if raw == "":
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and minimum <= int(raw) <= maximum:
        return int(raw)
    raise BadQuery(
        f"The page address is not valid: “{name}” must be a whole number "
        f"from {minimum} to {maximum:,}, written with the digits 0 to 9."
    )


def query_choice(request, name: str, choices, *, default: str) -> str:
    """``?name=`` when it is one of ``choices``; ``default`` when absent or
    empty; BadQuery for anything else."""
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    if raw in choices:
        return raw
    raise BadQuery(f"The page address is not valid: “{name}” must be one of {', '.join(choices)}.")


def query_has_nul(query) -> bool:
    """Whether a name or value in the query string holds a NUL character,
    which no page can use and PostgreSQL cannot store or compare."""
    return any(
        "\x00" in key or any("\x00" in value for value in query.getlist(key)) for key in query
    )
