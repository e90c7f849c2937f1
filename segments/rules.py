"""Segment rules: validate them, say them in plain words, compile them to SQL.

A segment's rules are JSON::

    {"match": "all" | "any", "conditions": [CONDITION | GROUP, ...]}

where a GROUP is ``{"match": ..., "conditions": [CONDITION, ...]}`` (one level
of nesting only) and a CONDITION is one of

- ``{"type": "property", "field": F, "operator": O, "value": V}``: ``F`` is
  ``email``, ``user_id`` or a key of the profile's custom attributes; ``O`` is
  ``equals``, ``not_equals``, ``contains``, ``exists``, ``not_exists``, ``gt``
  or ``lt`` (``gt``/``lt`` take a number or an ISO date ``"YYYY-MM-DD"``);
- ``{"type": "subscription", "status": "subscribed" | "unsubscribed",
  "topic": T}``: without a topic, the global email status; with one, the
  profile's explicit opt-in or opt-out of that topic;
- ``{"type": "event", "event": E, "operator": "at_least" | "at_most" |
  "not_done", "count": N, "within_days": D}``: ``event`` omitted means any
  event, ``count`` goes with ``at_least``/``at_most``, ``within_days`` is
  optional.

``rules_compile`` turns valid rules into one ``Q`` over ``Profile``: plain
column and JSON-key lookups for properties, correlated ``EXISTS`` for
preferences and events. User values only ever travel as query parameters.
"""

import datetime
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import (
    Case,
    CharField,
    DecimalField,
    Exists,
    F,
    Func,
    JSONField,
    OuterRef,
    Q,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import HasKey
from django.db.models.functions import Abs, Cast, Collate, Left
from django.utils import timezone

from profiles.models import Event, Profile, SubscriptionPreference

MATCHES = ("all", "any")
PROPERTY_OPERATORS = ("equals", "not_equals", "contains", "exists", "not_exists", "gt", "lt")
SUBSCRIPTION_STATUSES = ("subscribed", "unsubscribed")
EVENT_OPERATORS = ("at_least", "at_most", "not_done")
BUILTIN_FIELDS = ("email", "user_id")

MAX_CONDITIONS = 50
MAX_TEXT = 200
MAX_VALUE = 1000
MAX_DAYS = 36500
MAX_COUNT = 1_000_000
# Numbers in rules stay within what a double can hold, with a round limit.
MAX_NUMBER = 1e308
# A stored number larger than a double is skipped by gt/lt (see _compare).
STORED_NUMBER_LIMIT = Decimal(repr(sys.float_info.max))

_KEYS = {
    "group": {"match", "conditions"},
    "property": {"type", "field", "operator", "value"},
    "subscription": {"type", "status", "topic"},
    "event": {"type", "event", "operator", "count", "within_days"},
}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATE_PREFIX = r"^\d{4}-\d{2}-\d{2}"
_SURROGATE = re.compile("[\ud800-\udfff]")


class RulesError(ValueError):
    """Rules that cannot be compiled; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


# Validation ----------------------------------------------------------------


def rules_validate(rules) -> None:
    """Raise RulesError listing every problem, each with where it is
    ("Condition 2.1: ..."), so the form can show them all at once."""
    errors: list[str] = []
    _check_group(rules, "Rules", depth=0, errors=errors)
    if errors:
        raise RulesError(errors)


def _check_group(group, where, *, depth, errors):
    if not isinstance(group, dict):
        errors.append(f"{where}: must be an object with “match” and “conditions”.")
        return
    _check_keys(group, _KEYS["group"], where, errors)
    if group.get("match") not in MATCHES:
        errors.append(f"{where}: “match” must be “all” or “any”, not {_show(group.get('match'))}.")
    conditions = group.get("conditions")
    if not isinstance(conditions, list):
        errors.append(f"{where}: “conditions” must be a list.")
        return
    if not conditions:
        errors.append(f"{where}: the group is empty; add at least one condition.")
    if len(conditions) > MAX_CONDITIONS:
        errors.append(f"{where}: at most {MAX_CONDITIONS} conditions, not {len(conditions)}.")
    prefix = "Condition " if depth == 0 else f"{where}."
    for i, condition in enumerate(conditions, start=1):
        here = f"{prefix}{i}"
        if isinstance(condition, dict) and "type" not in condition and "match" in condition:
            if depth >= 1:
                errors.append(f"{here}: groups can be nested one level deep only.")
            else:
                _check_group(condition, here, depth=depth + 1, errors=errors)
        else:
            _check_condition(condition, here, errors)


def _check_condition(condition, where, errors):
    if not isinstance(condition, dict):
        errors.append(f"{where}: must be an object, not {_show(condition)}.")
        return
    kind = condition.get("type")
    checks = {"property": _check_property, "subscription": _check_subscription}
    checks["event"] = _check_event
    if kind not in checks:
        errors.append(
            f"{where}: unknown condition type {_show(kind)}; "
            "use “property”, “subscription” or “event”."
        )
        return
    _check_keys(condition, _KEYS[kind], where, errors)
    checks[kind](condition, where, errors)


def _check_property(condition, where, errors):
    name = condition.get("field")
    if not _is_text(name):
        errors.append(f"{where}: “field” must be “email”, “user_id” or an attribute name.")
        name = None
    operator = condition.get("operator")
    if operator not in PROPERTY_OPERATORS:
        errors.append(
            f"{where}: unknown operator {_show(operator)}; use one of "
            + ", ".join(PROPERTY_OPERATORS)
            + "."
        )
        return
    has_value, value = "value" in condition, condition.get("value")
    if operator in ("exists", "not_exists"):
        if has_value:
            errors.append(f"{where}: “{operator}” takes no “value”.")
    elif not has_value:
        errors.append(f"{where}: “{operator}” needs a “value”.")
    elif _number_problem(value):
        errors.append(f"{where}: “value” {_number_problem(value)}")
    elif isinstance(value, str) and not (len(value) <= MAX_VALUE and is_storable(value)):
        errors.append(
            f"{where}: “value” must be at most {MAX_VALUE} characters, "
            "without NUL or unpaired surrogate characters."
        )
    elif operator == "contains":
        if not isinstance(value, str) or not value:
            errors.append(f"{where}: “contains” needs a non-empty text value.")
    elif operator in ("gt", "lt"):
        if name in BUILTIN_FIELDS:
            errors.append(f"{where}: “{operator}” compares numbers and dates, not {name}.")
        elif not (_is_number(value) or _is_iso_date(value)):
            errors.append(
                f"{where}: “{operator}” needs a number or a date written YYYY-MM-DD, "
                f"not {_show(value)}."
            )
    elif name in BUILTIN_FIELDS:
        if not isinstance(value, str):
            errors.append(f"{where}: {name} is text; “value” must be text, not {_show(value)}.")
    elif not (isinstance(value, str | bool) or _is_number(value)):
        errors.append(f"{where}: “value” must be text, a number or true/false, not {_show(value)}.")


def _check_subscription(condition, where, errors):
    if condition.get("status") not in SUBSCRIPTION_STATUSES:
        errors.append(
            f"{where}: “status” must be “subscribed” or “unsubscribed”, "
            f"not {_show(condition.get('status'))}."
        )
    if "topic" in condition and not _is_text(condition["topic"]):
        errors.append(f"{where}: “topic” must be a topic name (text); leave it out for all email.")


def _check_event(condition, where, errors):
    if "event" in condition and not _is_text(condition["event"]):
        errors.append(f"{where}: “event” must be an event name (text); leave it out for any event.")
    operator = condition.get("operator")
    if operator not in EVENT_OPERATORS:
        errors.append(
            f"{where}: unknown operator {_show(operator)}; use at_least, at_most or not_done."
        )
    elif operator == "not_done":
        if "count" in condition:
            errors.append(f"{where}: “not_done” takes no “count”.")
    else:
        lowest = 1 if operator == "at_least" else 0
        count = condition.get("count")
        if not (_is_int(count) and lowest <= count <= MAX_COUNT):
            errors.append(
                f"{where}: “{operator}” needs a whole number “count” of at least {lowest}, "
                f"not {_show(count)}."
            )
    if "within_days" in condition:
        days = condition["within_days"]
        if not (_is_int(days) and 1 <= days <= MAX_DAYS):
            errors.append(
                f"{where}: “within_days” must be a whole number of days from 1 to {MAX_DAYS}, "
                f"not {_show(days)}."
            )


def _check_keys(obj, allowed, where, errors):
    unknown = sorted(set(obj) - allowed)
    if unknown:
        names = ", ".join(f"“{key}”" for key in unknown)
        errors.append(f"{where}: unknown key {names}; allowed: {', '.join(sorted(allowed))}.")


def _is_text(value) -> bool:
    return (
        isinstance(value, str)
        and len(value.strip()) > 0
        and len(value) <= MAX_TEXT
        and is_storable(value)
    )


def is_storable(value: str) -> bool:
    """PostgreSQL's jsonb holds neither NUL nor a lone surrogate."""
    return "\x00" not in value and not _SURROGATE.search(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A number a rule can use: finite (JSON has no NaN or Infinity, though
    Python's parser reads them) and within MAX_NUMBER."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not _number_problem(value)
    )


def _number_problem(value) -> str | None:
    """What is wrong with a number too odd to compare (None if nothing, or
    if ``value`` is not a number at all)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and math.isnan(value):
        return "is not a number (NaN); use a number like 30 or 2.5."
    if abs(value) > MAX_NUMBER:  # infinity too
        return "is too large a number; use one between -1e308 and 1e308."
    return None


def _is_iso_date(value) -> bool:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _show(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"“{value[:MAX_TEXT]}”"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) > MAX_NUMBER:
        return "a number too large to show"  # str() refuses over 4300 digits
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    return str(value)


# Compilation ---------------------------------------------------------------


def rules_compile(rules, *, now: datetime.datetime | None = None) -> Q:
    """One filter over Profile that holds exactly for the segment's members.

    ``now`` anchors "within the last D days"; it defaults to the present.
    """
    rules_validate(rules)
    return _compile_group(rules, now or timezone.now())


def rules_matching_profiles(rules, *, now: datetime.datetime | None = None):
    """The ids of the profiles the rules select, as one queryset (one query)."""
    return Profile.objects.filter(rules_compile(rules, now=now)).values("id")


def _is_group(node) -> bool:
    return "type" not in node


def _compile_group(group, now) -> Q:
    parts = [
        _compile_group(c, now) if _is_group(c) else _compile_condition(c, now)
        for c in group["conditions"]
    ]
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part if group["match"] == "all" else combined | part
    return combined


def _compile_condition(condition, now) -> Q:
    kind = condition["type"]
    if kind == "property":
        return _compile_property(condition)
    if kind == "subscription":
        return _compile_subscription(condition)
    return _compile_event(condition, now)


def _lookup(expression, name, value) -> Q:
    """``expression <name> value`` as a filter, e.g. _lookup(F("email"), "icontains", "x")."""
    lookup_class = expression.output_field.get_lookup(name)
    return Q(lookup_class(expression, value))


class PropertyKey(Func):
    """``properties -> 'name'`` (or ``->>`` for text), the name always a text
    parameter.

    Django's own ``KeyTransform`` reads a name that looks like a number
    ("0", "-1", " 1 ", "2024") as an array index, so a rule on the attribute
    "2024" would look at the wrong thing and "is not set" would match
    everyone. Here a name is only ever an object key.
    """

    template = "(%(expressions)s)"

    def __init__(self, name: str, *, as_text: bool = False):
        super().__init__(
            F("properties"),
            Cast(Value(name), TextField()),
            arg_joiner=" ->> " if as_text else " -> ",
            output_field=TextField() if as_text else JSONField(),
        )


def _compile_property(condition) -> Q:
    name, operator, value = condition["field"], condition["operator"], condition.get("value")
    if name in BUILTIN_FIELDS:
        return _compile_builtin(name, operator, value)

    as_json = PropertyKey(name)
    as_text = PropertyKey(name, as_text=True)
    # "Set" means present and not JSON null. ``?`` (usable by a GIN index on
    # properties) finds the key; ``->>`` leaves out nulls and, on a
    # properties value that is not an object, anything ``?`` would also match.
    is_set = Q(HasKey(F("properties"), name)) & _lookup(as_text, "isnull", False)
    if operator == "equals":
        return _json_equals(as_json, value)
    if operator == "not_equals":
        # The exact complement of equals: people without the attribute count too.
        return ~_json_equals(as_json, value) | ~is_set
    if operator == "contains":
        return _lookup(as_text, "icontains", value)
    if operator == "exists":
        return is_set
    if operator == "not_exists":
        return ~is_set
    return _compare(as_json, as_text, operator, value)


def _json_equals(as_json, value) -> Q:
    """Type-exact, as JSON: "30" does not equal 30, but 30 equals 30.0."""
    lookup_class = as_json.output_field.get_lookup("exact")
    return Q(lookup_class(as_json, Value(value, output_field=JSONField())))


def _compare(as_json, as_text, operator, value) -> Q:
    """gt/lt on numbers stored as JSON numbers, or on dates stored as ISO text.

    Other values of the attribute never match: casting them would fail, and
    JSON's own ordering would put every string below every number. Numbers
    compare as ``numeric``, the type jsonb stores them in; one beyond double
    precision (1e400, stored before the API refused such numbers) is skipped
    like a text value, where a cast to double precision would fail the whole
    refresh.
    """
    lookup = "gt" if operator == "gt" else "lt"
    if _is_number(value):
        json_type = Func(as_json, function="jsonb_typeof", output_field=CharField())
        stored = _numeric(as_json)
        # One CASE, so the cast never runs on a value that is not a number.
        number = Case(
            When(~_lookup(json_type, "exact", "number"), then=Value(None)),
            When(_lookup(Abs(stored), "gt", STORED_NUMBER_LIMIT), then=Value(None)),
            default=stored,
            output_field=DecimalField(),
        )
        return _lookup(number, lookup, _numeric(Value(str(_decimal(value)))))
    # ISO dates sort as text; "C" collation makes that independent of the locale.
    day = Case(
        When(_lookup(as_text, "regex", _ISO_DATE_PREFIX), then=Collate(Left(as_text, 10), "C")),
        default=None,
        output_field=CharField(),
    )
    return _lookup(day, lookup, value)


def _numeric(expression) -> Func:
    return Func(expression, template="(%(expressions)s)::numeric", output_field=DecimalField())


def _decimal(value) -> Decimal:
    """The rule's number exactly as written: 0.1 stays 0.1, not its binary float."""
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _compile_builtin(name, operator, value) -> Q:
    if name == "email":
        # Email addresses are compared case-insensitively, as mail systems do.
        if operator in ("equals", "not_equals"):
            matched = Q(email__iexact=value)
            return matched if operator == "equals" else ~matched
        if operator == "contains":
            return Q(email__icontains=value)
        has_email = ~Q(email="")
        return has_email if operator == "exists" else ~has_email
    has_id = Q(user_id__isnull=False) & ~Q(user_id="")
    if operator == "equals":
        return Q(user_id=value)
    if operator == "not_equals":
        return ~Q(user_id=value) | Q(user_id__isnull=True)
    if operator == "contains":
        return Q(user_id__icontains=value)
    return has_id if operator == "exists" else ~has_id


def _compile_subscription(condition) -> Q:
    subscribed = condition["status"] == "subscribed"
    topic = condition.get("topic")
    if topic is None:
        return Q(subscribed=subscribed)
    preference = SubscriptionPreference.objects.filter(
        profile=OuterRef("pk"), topic=topic, subscribed=subscribed
    )
    return Q(Exists(preference))


def _compile_event(condition, now) -> Q:
    """Counts become EXISTS over the N-th matching event (OFFSET N-1), so each
    profile costs one short probe of the (profile, occurred_at) index and no
    count ever runs over a profile's whole history."""
    events = Event.objects.filter(profile=OuterRef("pk"))
    if condition.get("event"):
        events = events.filter(name=condition["event"])
    if condition.get("within_days"):
        events = events.filter(occurred_at__gte=now - timedelta(days=condition["within_days"]))
    operator = condition["operator"]
    if operator == "not_done" or (operator == "at_most" and condition["count"] == 0):
        return ~Q(Exists(events))
    count = condition["count"]
    if operator == "at_least":
        return Q(Exists(events if count == 1 else events[count - 1 : count]))
    return ~Q(Exists(events[count : count + 1]))


# Plain words ---------------------------------------------------------------


@dataclass
class Described:
    """One line of the rules in plain words; a group has ``children``."""

    text: str
    children: list["Described"] = field(default_factory=list)


def rules_describe(rules) -> Described:
    """The rules as sentences a marketer can check, for the segment page.

    Works on invalid rules too (say, edited in Django admin), describing what
    it can and saying which part it cannot read.
    """
    try:
        rules_validate(rules)
    except RulesError as error:
        return Described(
            "These rules are not valid, so the segment cannot be refreshed:",
            [Described(message) for message in error.errors],
        )
    return _describe_group(rules)


def _describe_group(group) -> Described:
    heading = "All of these:" if group["match"] == "all" else "Any of these:"
    items = [
        _describe_group(c) if _is_group(c) else Described(_describe_condition(c))
        for c in group["conditions"]
    ]
    return Described(heading, items)


def _describe_condition(condition) -> str:
    kind = condition["type"]
    if kind == "property":
        return _describe_property(condition)
    if kind == "subscription":
        topic = condition.get("topic")
        if condition["status"] == "subscribed":
            return f"Opted in to the “{topic}” topic" if topic else "Subscribed to email"
        return f"Opted out of the “{topic}” topic" if topic else "Unsubscribed from all email"
    return _describe_event(condition)


def _describe_property(condition) -> str:
    name, operator, value = condition["field"], condition["operator"], condition.get("value")
    subject = {"email": "Email", "user_id": "User id"}.get(name, f"Attribute “{name}”")
    if operator in ("exists", "not_exists"):
        return f"{subject} {'is set' if operator == 'exists' else 'is not set'}"
    shown = _show(value)
    if operator in ("gt", "lt"):
        if _is_number(value):
            verb = "is greater than" if operator == "gt" else "is less than"
        else:
            verb, shown = ("is after" if operator == "gt" else "is before"), value
        return f"{subject} {verb} {shown}"
    verb = {"equals": "is", "not_equals": "is not", "contains": "contains"}[operator]
    if operator == "not_equals" and name not in BUILTIN_FIELDS:
        return f"{subject} is not {shown} (or is not set)"
    if operator == "contains":
        return f"{subject} contains {shown} (ignoring case)"
    return f"{subject} {verb} {shown}"


def _describe_event(condition) -> str:
    name = condition.get("event")
    window = (
        f" in the last {_plural(condition['within_days'], 'day')}"
        if condition.get("within_days")
        else ""
    )
    what = f"“{name}”" if name else "any event"
    operator = condition["operator"]
    if operator == "not_done" or (operator == "at_most" and condition["count"] == 0):
        return (f"Did not do {what}" if name else "Did nothing") + window
    count = condition["count"]
    if operator == "at_least":
        times = "at least once" if count == 1 else f"at least {count} times"
    else:
        times = "at most once" if count == 1 else f"at most {count} times"
    return f"Did {what} {times}{window}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n:,} {word}s"
