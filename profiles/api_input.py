"""What the ingestion API accepts: request bodies checked and turned into calls.

Everything here is pure: no database, no request. A body is refused as a
whole, with a message that names the offending key (and, in a Segment batch,
the item), before anything is written. Unknown keys are refused rather than
ignored, so a typo such as ``"emial"`` is reported instead of silently
dropping the address.
"""

import json
import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.dateparse import parse_datetime

MAX_ID_LENGTH = 255
MAX_EMAIL_LENGTH = 254
MAX_EVENT_NAME_LENGTH = 255
MAX_TAG_LENGTH = 100
MAX_BATCH_ITEMS = 500
MAX_DEPTH = 32
# Times outside this window are refused: none is a real event, and a time past
# Python's year 9999 (which PostgreSQL would store) could not be read back.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)  # clients' clocks run fast, a little
# Numbers beyond a double cannot be compared in a segment rule (PostgreSQL
# casts to double precision), so they are refused like NaN and Infinity.
FLOAT_MAX = sys.float_info.max

# Where a client may put its API key, besides HTTP Basic auth.
KEY_FIELDS = ("tracking_api_key", "auth_token")
SEGMENT_KEY_FIELD = "writeKey"


class InvalidInput(Exception):
    """A request the API refuses; the message is shown to the client as is."""

    def __init__(self, message: str, *, item: int | None = None):
        super().__init__(message)
        self.item = item


@dataclass(frozen=True)
class Identity:
    user_id: str | None
    email: str  # "" when not given


@dataclass(frozen=True)
class IdentifyCall:
    identity: Identity
    data: dict
    message_id: str | None = None


@dataclass(frozen=True)
class TrackCall:
    identity: Identity
    name: str
    data: dict
    occurred_at: datetime
    message_id: str | None = None


@dataclass(frozen=True)
class TagsChange:
    identity: Identity
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


# --- JSON ---------------------------------------------------------------------


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(raw: bytes) -> dict:
    """The body as a JSON object, or InvalidInput.

    What PostgreSQL cannot store or compare is refused here, naming where it
    is, instead of failing at insert or in a later segment refresh: NaN and
    Infinity, numbers beyond the float range (``1e400``, ``10**400``), the
    NUL character and lone UTF-16 surrogates (``"\\ud800"``), in values
    and in keys.
    """
    if not raw.strip():
        raise InvalidInput("The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidInput("The request body is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidInput(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"The request body must be a JSON object, not {_json_type(body)}.")
    check_storable(body, "body")
    return body


def check_storable(value, where: str, depth: int = 0) -> None:
    """InvalidInput if ``value`` holds anything PostgreSQL cannot store or compare."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{where} is nested more than {MAX_DEPTH} levels deep.")
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"a key in {where}")
            check_storable(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where} is not a finite number (at most ±{FLOAT_MAX:.4g}).")
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise InvalidInput(
                f"{where} is a number outside the accepted range (±{FLOAT_MAX:.4g})."
            ) from None


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidInput(f"{where} contains a NUL character (\\u0000).")
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"Invalid text: lone surrogate at {where} "
            f"(\\u{ord(text[exc.start]):04x} at character {exc.start})."
        ) from None


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- fields -------------------------------------------------------------------


def check_keys(body: dict, allowed: set[str], *, where: str = "The request") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        names = ", ".join(f'"{key}"' for key in unknown)
        expected = ", ".join(f'"{key}"' for key in sorted(allowed))
        raise InvalidInput(f"{where} has unknown key(s) {names}; expected only {expected}.")


def user_id_value(value, *, name: str) -> str | None:
    """A customer's id: a non-empty string or an integer (stored as text)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f'"{name}" must be a string or an integer, not {_json_type(value)}.')
    text = str(value).strip()
    if not text:
        raise InvalidInput(f'"{name}" must not be empty.')
    if len(text) > MAX_ID_LENGTH:
        raise InvalidInput(f'"{name}" must be at most {MAX_ID_LENGTH} characters.')
    return text


def email_value(value, *, name: str = "email") -> str:
    """A valid address, lower-cased so that one person is one email; "" if absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f'"{name}" must be a string, not {_json_type(value)}.')
    email = value.strip().lower()
    if not email:
        return ""
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f'"{name}" must be at most {MAX_EMAIL_LENGTH} characters.')
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(f'"{name}" is not a valid email address: {value!r}.') from None
    return email


def object_value(value, *, name: str, required: bool = False) -> dict:
    if value is None:
        if required:
            raise InvalidInput(f'"{name}" is required and must be an object.')
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f'"{name}" must be an object, not {_json_type(value)}.')
    return value


def string_value(value, *, name: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f'"{name}" is required and must be a non-empty string.')
    if len(value) > max_length:
        raise InvalidInput(f'"{name}" must be at most {max_length} characters.')
    return value.strip()


def timestamp_value(value, *, name: str) -> datetime:
    """ISO 8601 (a naive time is UTC) or Unix seconds; now when absent.

    Refused outside 1970-01-01T00:00:00Z .. now + FUTURE_TOLERANCE.
    """
    if value is None:
        return timezone.now()
    moment = _parse_time(value, name=name)
    latest = timezone.now() + FUTURE_TOLERANCE
    if not EARLIEST_TIME <= moment <= latest:
        raise InvalidInput(
            f'"{name}" must be between 1970-01-01T00:00:00Z and one day from now '
            f"({latest:%Y-%m-%dT%H:%M:%SZ}); got {value!r}."
        )
    return moment


def _parse_time(value, *, name: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(
                f'"{name}" is not a valid Unix timestamp (seconds since 1970); got {value!r}.'
            ) from None
    # Django's parser reads any Unicode digit ("٢٠٢٤" as 2024): ASCII only.
    if isinstance(value, str) and value.isascii():
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    raise InvalidInput(
        f'"{name}" must be an ISO 8601 date and time or a Unix timestamp; got {value!r}.'
    )


def identity_value(body: dict, *, where: str = "", email_key: str = "email") -> Identity:
    """``id`` and/or email from ``body``; one of them is required."""
    user_id = user_id_value(body.get("id"), name=f"{where}id")
    email = email_value(body.get(email_key), name=f"{where}{email_key}")
    if user_id is None and not email:
        raise InvalidInput(f'Give "{where}id" or "{where}{email_key}" to say who this is.')
    return Identity(user_id=user_id, email=email)


def tag_list(value, *, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f'"{name}" must be an array of tags, not {_json_type(value)}.')
    tags = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidInput(f'"{name}[{index}]" must be a non-empty string.')
        if len(tag.strip()) > MAX_TAG_LENGTH:
            raise InvalidInput(f'"{name}[{index}]" must be at most {MAX_TAG_LENGTH} characters.')
        if tag.strip() not in tags:
            tags.append(tag.strip())
    return tags


# --- Vero REST API v2 bodies --------------------------------------------------


def parse_identify(body: dict) -> IdentifyCall:
    check_keys(body, {"id", "email", "data"})
    return IdentifyCall(
        identity=identity_value(body), data=object_value(body.get("data"), name="data")
    )


def parse_edit(body: dict) -> tuple[Identity, dict]:
    check_keys(body, {"id", "email", "changes"})
    return identity_value(body), object_value(body.get("changes"), name="changes", required=True)


def parse_tags(body: dict) -> TagsChange:
    check_keys(body, {"id", "email", "add", "remove"})
    identity = identity_value(body)
    if body.get("add") is None and body.get("remove") is None:
        raise InvalidInput('Give "add" and/or "remove", each an array of tags.')
    add, remove = tag_list(body.get("add"), name="add"), tag_list(body.get("remove"), name="remove")
    both = sorted(set(add) & set(remove))
    if both:
        raise InvalidInput(f"Tag(s) {', '.join(both)} cannot be both added and removed.")
    return TagsChange(identity=identity, add=add, remove=remove)


def parse_reidentify(body: dict) -> tuple[str, str]:
    check_keys(body, {"id", "new_id"})
    user_id = user_id_value(body.get("id"), name="id")
    new_user_id = user_id_value(body.get("new_id"), name="new_id")
    if user_id is None or new_user_id is None:
        raise InvalidInput('Give both "id" (the current id) and "new_id".')
    return user_id, new_user_id


def parse_identity_only(body: dict) -> Identity:
    check_keys(body, {"id", "email"})
    return identity_value(body)


def parse_delete(body: dict) -> str:
    check_keys(body, {"id"})
    user_id = user_id_value(body.get("id"), name="id")
    if user_id is None:
        raise InvalidInput('Give the "id" of the profile to delete.')
    return user_id


def parse_event(body: dict) -> TrackCall:
    check_keys(body, {"identity", "event_name", "data", "extras"})
    identity_body = object_value(body.get("identity"), name="identity", required=True)
    check_keys(identity_body, {"id", "email"}, where='"identity"')
    extras = object_value(body.get("extras"), name="extras")
    check_keys(extras, {"created_at", "source"}, where='"extras"')
    return TrackCall(
        identity=identity_value(identity_body, where="identity."),
        name=string_value(
            body.get("event_name"), name="event_name", max_length=MAX_EVENT_NAME_LENGTH
        ),
        data=object_value(body.get("data"), name="data"),
        occurred_at=timestamp_value(extras.get("created_at"), name="extras.created_at"),
    )


# --- Segment's HTTP tracking API -----------------------------------------------

SEGMENT_MESSAGE_KEYS = {
    # The common fields of Segment's spec, and the ones of each call type.
    "type", "messageId", "userId", "anonymousId", "context", "integrations",
    "timestamp", "originalTimestamp", "sentAt", "receivedAt", "version", "channel",
    "traits", "event", "properties", "name", "category", "groupId", "previousId",
    "_metadata", SEGMENT_KEY_FIELD,
}  # fmt: skip
SEGMENT_BATCH_KEYS = {"batch", "context", "integrations", "sentAt", "_metadata", SEGMENT_KEY_FIELD}
SEGMENT_APPLIED_TYPES = {"identify", "track"}
# Accepted so that a client library's batch is not refused, but not stored.
SEGMENT_IGNORED_TYPES = {"page", "screen", "group", "alias"}
# Not stored, but checked like ``timestamp``: a client sending a time out of
# range is broken, and is told so.
SEGMENT_OTHER_TIMES = ("originalTimestamp", "sentAt", "receivedAt")


def parse_segment_batch(body: dict) -> list[IdentifyCall | TrackCall | None]:
    """The calls of a ``/v1/batch`` body, in order; None for a message that is
    valid but not stored (an ignored type, or an anonymous visitor's)."""
    check_keys(body, SEGMENT_BATCH_KEYS)
    items = body.get("batch")
    if not isinstance(items, list):
        raise InvalidInput('"batch" is required and must be an array of messages.')
    if not items:
        raise InvalidInput('"batch" is empty.')
    if len(items) > MAX_BATCH_ITEMS:
        raise InvalidInput(
            f'"batch" has {len(items)} messages; send at most {MAX_BATCH_ITEMS} per request.'
        )
    context = object_value(body.get("context"), name="context")
    if body.get("sentAt") is not None:
        timestamp_value(body["sentAt"], name="sentAt")
    return [
        parse_segment_message(item, where=f"batch[{index}]", index=index, batch_context=context)
        for index, item in enumerate(items)
    ]


def parse_segment_message(
    message,
    *,
    where: str = "The message",
    index: int | None = None,
    batch_context: dict | None = None,
    call_type: str | None = None,
) -> IdentifyCall | TrackCall | None:
    """One Segment message as a call; ``call_type`` is set by /v1/identify and /v1/track."""
    try:
        return _segment_message(message, call_type=call_type, batch_context=batch_context or {})
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}", item=index) from None


def _segment_message(message, *, call_type, batch_context) -> IdentifyCall | TrackCall | None:
    if not isinstance(message, dict):
        raise InvalidInput(f"a message must be an object, not {_json_type(message)}.")
    check_keys(message, SEGMENT_MESSAGE_KEYS, where="It")
    kind = message.get("type", call_type)
    if call_type and kind != call_type:
        raise InvalidInput(f'"type" is {kind!r} but this endpoint takes {call_type!r} messages.')
    if kind in SEGMENT_IGNORED_TYPES:
        return None
    if kind not in SEGMENT_APPLIED_TYPES:
        raise InvalidInput(
            f'"type" must be one of identify, track, page, screen, group or alias; got {kind!r}.'
        )
    message_id = message.get("messageId")
    if message_id is not None:
        message_id = user_id_value(message_id, name="messageId")
    context = {**batch_context, **object_value(message.get("context"), name="context")}
    context_traits = object_value(context.get("traits"), name="context.traits")
    user_id = user_id_value(message.get("userId"), name="userId")
    anonymous_id = user_id_value(message.get("anonymousId"), name="anonymousId")
    occurred_at = timestamp_value(message.get("timestamp"), name="timestamp")
    for name in SEGMENT_OTHER_TIMES:
        if message.get(name) is not None:
            timestamp_value(message[name], name=name)
    if kind == "identify":
        traits = dict(object_value(message.get("traits"), name="traits"))
        email = email_value(
            traits.pop("email", None) or context_traits.get("email"), name="traits.email"
        )
        call = IdentifyCall(
            identity=Identity(user_id=user_id, email=email), data=traits, message_id=message_id
        )
    else:
        email = email_value(context_traits.get("email"), name="context.traits.email")
        call = TrackCall(
            identity=Identity(user_id=user_id, email=email),
            name=string_value(message.get("event"), name="event", max_length=MAX_EVENT_NAME_LENGTH),
            data=object_value(message.get("properties"), name="properties"),
            occurred_at=occurred_at,
            message_id=message_id,
        )
    if user_id is None and not email:
        if anonymous_id is None:
            raise InvalidInput(
                'give "userId" (or an email in "traits.email" / "context.traits.email"), '
                'or "anonymousId" for an anonymous visitor.'
            )
        # An anonymous visitor is not a profile: checked like the rest, then
        # skipped, so the identified messages beside it are stored.
        return None
    return call
