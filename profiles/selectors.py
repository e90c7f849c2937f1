from dataclasses import dataclass
from datetime import datetime

from django.db.models import BooleanField, Count, F, Func, Q, TextField, Value

from profiles.models import ApiKey, Event, Profile, SubscriptionPreference

# A trigram index cannot find text shorter than a trigram: shorter searches
# look for an exact user id or email instead (both have an index of their own).
SEARCH_MIN_CHARS = 3


class SearchText(Func):
    """A profile's email, user id and attribute values as one text: the
    expression the trigram index ``profile_search_trgm_idx`` is built on
    (profiles/migrations/0005), repeated exactly so the planner can use it."""

    function = "profile_search_text"
    output_field = TextField()

    def __init__(self, prefix: str = ""):
        super().__init__(F(f"{prefix}email"), F(f"{prefix}user_id"), F(f"{prefix}properties"))


class ILike(Func):
    """``text ILIKE pattern``. Django's ``icontains`` writes
    ``UPPER(text) LIKE UPPER(pattern)``, which no trigram index on ``text`` serves."""

    arg_joiner = " ILIKE "
    template = "(%(expressions)s)"
    output_field = BooleanField()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_uses_index(query: str) -> bool:
    """Whether ``query`` is long enough for the trigram index to narrow the
    search down.

    pg_trgm takes trigrams from the words (runs of letters and digits) of a
    LIKE pattern, padding a word with blanks where it meets punctuation but
    not where it meets the pattern's ``%``. A query such as "@.-" or "a.b"
    has no (or too few) trigrams: the index would be read whole, which is
    slower than not using it. Those, and anything under 3 characters, look
    for an exact user id or email instead.
    """
    if len(query) < SEARCH_MIN_CHARS:
        return False
    trigrams = 0
    word = ""
    for position, char in enumerate(query + "\0"):
        if char.isalnum():
            word += char
            continue
        if word:
            starts = position - len(word)
            padded = len(word) + (2 if starts > 0 else 0) + (1 if char != "\0" else 0)
            trigrams += max(0, padded - 2)
        word = ""
    return trigrams >= 1


def profile_search_filter(*, query: str, prefix: str = "") -> Q:
    """Profiles matching ``query``, as a filter (``prefix`` reaches a profile
    through a relation, e.g. "profile__").

    A query the index can serve matches any part of the email, user id or an
    attribute value, ignoring case. Anything shorter matches an exact user id,
    or a whole email address as typed or in lower case.
    """
    if search_uses_index(query):
        return Q(ILike(SearchText(prefix), Value(f"%{_like_escape(query)}%")))
    return _exact_filter(query=query, prefix=prefix)


def _exact_filter(*, query: str, prefix: str = "") -> Q:
    return (
        Q(**{f"{prefix}user_id": query})
        | Q(**{f"{prefix}email": query})
        | Q(**{f"{prefix}email": query.lower()})
    )


def profile_search(*, query: str = ""):
    """Profiles matching ``query`` (all of them when it is empty)."""
    profiles = Profile.objects.all()
    query = query.strip()
    if query:
        profiles = profiles.filter(profile_search_filter(query=query))
    return profiles


def profile_exact_match(*, query: str) -> Profile | None:
    """The profile whose user id or whole email is ``query``: named above the
    results, since a search for "u12" also finds u120, u1200, ..."""
    query = query.strip()
    if not query:
        return None
    return Profile.objects.filter(_exact_filter(query=query)).order_by("pk").first()


RECENT_EVENTS = 50


def profile_recent_events(*, profile: Profile, limit: int = RECENT_EVENTS):
    return Event.objects.filter(profile=profile).order_by("-occurred_at", "-pk")[:limit]


@dataclass
class EventsPage:
    events: list
    older: tuple[datetime, int] | None  # the cursor of the next (older) page


def profile_events_page(
    *, profile: Profile, older_than: tuple[datetime, int] | None = None, limit: int = RECENT_EVENTS
) -> EventsPage:
    """One page of a person's events, newest first, by keyset on (time, id):
    the page after ``older_than`` costs the same as the first."""
    events = Event.objects.filter(profile=profile)
    if older_than is not None:
        occurred_at, pk = older_than
        events = events.filter(
            Q(occurred_at__lt=occurred_at) | Q(occurred_at=occurred_at, pk__lt=pk)
        )
    rows = list(events.order_by("-occurred_at", "-pk")[: limit + 1])
    older = (rows[limit - 1].occurred_at, rows[limit - 1].pk) if len(rows) > limit else None
    return EventsPage(rows[:limit], older)


def profile_event_count(*, profile: Profile) -> int:
    return Event.objects.filter(profile=profile).count()


def profile_segments(*, profile: Profile):
    """The segments the person is in (as of each segment's last refresh).
    Through the reverse relation: profiles imports no app above it."""
    return profile.memberships.select_related("segment").order_by("segment__name")


def profile_preferences(*, profile: Profile):
    return SubscriptionPreference.objects.filter(profile=profile).order_by("topic")


def profile_messages(*, profile: Profile, limit: int = 50):
    # Through the reverse relation: profiles is the ground floor and imports
    # no app above it.
    return (
        profile.messages.select_related("campaign")
        .annotate(
            opens=Count("activities", filter=Q(activities__kind="open")),
            clicks=Count("activities", filter=Q(activities__kind="click")),
        )
        .order_by("-sent_at")[:limit]
    )


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active (not revoked) key with this text, or None."""
    if not raw_key:
        return None
    return ApiKey.objects.filter(hashed_key=ApiKey.hash(raw_key), revoked_at__isnull=True).first()
