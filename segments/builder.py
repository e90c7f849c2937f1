"""The segment builder: a segment's rules as rows of ordinary form fields, and back.

Rows are how marketers edit rules; ``segments.rules`` stays the one validator
and compiler. Each row posts as plain fields (``c0-kind``, ``c0-field``, ...;
``c1-0-...`` for the first row of a group in row 2), so the form saves
without JavaScript, and htmx only re-renders what changed.

The conversion is exact both ways: whatever rules the validator accepts open
as rows and come back unchanged (a JSON ``30`` stays a number, ``"30"`` stays
text, a missing ``within_days`` stays missing). Each row says what kind of
value it holds, which is what keeps ``30`` and ``"30"`` apart.
"""

import datetime
import json
import math
import re
from dataclasses import dataclass, field

from segments.rules import (
    BUILTIN_FIELDS,
    MAX_CONDITIONS,
    MAX_COUNT,
    MAX_DAYS,
    MAX_TEXT,
    RulesError,
    is_storable,
    rules_validate,
)

KINDS = [
    ("attribute", "Attribute"),
    ("contact", "Email or user id"),
    ("subscription", "Subscription"),
    ("event", "Event"),
]
VALUE_TYPES = [("text", "Text"), ("number", "Number"), ("date", "Date"), ("boolean", "Yes / no")]
_SET = [("exists", "is set"), ("not_exists", "is not set")]
OPERATORS = {
    "text": [("equals", "is"), ("not_equals", "is not"), ("contains", "contains"), *_SET],
    "number": [
        ("equals", "is"),
        ("not_equals", "is not"),
        ("gt", "is more than"),
        ("lt", "is less than"),
        *_SET,
    ],
    "date": [("gt", "is after"), ("lt", "is before"), *_SET],
    "boolean": [("equals", "is"), ("not_equals", "is not"), *_SET],
}
CONTACT_FIELDS = [("email", "Email"), ("user_id", "User id")]
CONTACT_OPERATORS = OPERATORS["text"]
STATUSES = [("subscribed", "Subscribed to"), ("unsubscribed", "Unsubscribed from")]
EVENT_OPERATORS = [
    ("at_least", "done at least"),
    ("at_most", "done at most"),
    ("not_done", "not done"),
]
MATCHES = [("all", "all"), ("any", "any")]

# The fields each kind of row posts; every row carries all of its kind's keys.
FIELDS = {
    "attribute": ("field", "operator", "value_type", "value"),
    "contact": ("field", "operator", "value"),
    "subscription": ("status", "topic"),
    "event": ("event", "operator", "count", "within_days"),
    "group": ("match",),
}
DEFAULTS = {
    "attribute": {"operator": "equals", "value_type": "text"},
    "contact": {"field": "email", "operator": "equals"},
    "subscription": {"status": "subscribed"},
    "event": {"operator": "at_least", "count": "1"},
    "group": {"match": "any"},
}
_NAME = re.compile(r"^c(\d{1,2})(?:-(\d{1,2}))?-([a-z_]{1,20})$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$")
_INTEGER = re.compile(r"^[+-]?\d{1,30}$")
_WHOLE = re.compile(r"^\d{1,9}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Row:
    """One condition (or a group of them) as the form shows it.

    ``values`` holds the posted text of each field of the row's kind;
    ``condition`` is the rule it makes (set by ``Builder.compile``, a best
    effort when ``errors`` is not empty).
    """

    kind: str
    values: dict[str, str]
    children: list["Row"] = field(default_factory=list)
    prefix: str = ""
    number: str = ""
    errors: list[str] = field(default_factory=list)
    condition: dict | None = None
    count: object = None
    unfilled: bool = False  # not filled in yet: not counted, its problems not shown

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def operators(self):
        if self.kind == "attribute":
            return OPERATORS.get(self.values["value_type"], OPERATORS["text"])
        if self.kind == "contact":
            return CONTACT_OPERATORS
        return EVENT_OPERATORS

    @property
    def takes_value(self) -> bool:
        return self.values.get("operator") not in ("exists", "not_exists")

    @property
    def takes_count(self) -> bool:
        return self.values.get("operator") != "not_done"

    @property
    def is_valid(self) -> bool:
        return (
            not self.errors and not self.unfilled and all(child.is_valid for child in self.children)
        )


def _row(kind: str, **values) -> Row:
    full = dict.fromkeys(FIELDS[kind], "") | DEFAULTS[kind] | values
    return Row(kind, {name: full[name] for name in FIELDS[kind]})


@dataclass
class Builder:
    """The rows of a segment's rules, with what the page needs to show them.

    ``source`` says where the rules came from: ``rows``, or ``json`` when the
    JSON was edited (it then replaces the rows). ``json_errors`` are problems
    of edited JSON; ``errors`` are problems of the rules as a whole.
    """

    match: str
    rows: list[Row]
    json_text: str = ""
    rows_json: str = ""
    json_errors: list[str] = field(default_factory=list)
    source: str = "rows"
    errors: list[str] = field(default_factory=list)
    focus: str = ""
    rules: dict | None = None
    catalogue: object = None
    incomplete: bool = False

    @property
    def choices(self) -> dict:
        return {
            "kinds": KINDS,
            "value_types": VALUE_TYPES,
            "contact_fields": CONTACT_FIELDS,
            "statuses": STATUSES,
        }

    @property
    def is_valid(self) -> bool:
        return not (self.errors or self.json_errors or self.incomplete) and all(
            r.is_valid for r in self.rows
        )

    def hush_empty_rows(self) -> "Builder":
        """While editing, a row not filled in yet is not an error to show:
        it is only not counted. Saving shows its problems."""
        for row in self.all_rows():
            values = row.values
            if row.kind == "attribute" and not values["field"] and not values["value"]:
                row.unfilled = bool(row.errors)
                self.incomplete = self.incomplete or row.unfilled
                row.errors = []
        return self

    def numbered(self) -> "Builder":
        for i, row in enumerate(self.rows):
            row.prefix, row.number = f"c{i}", str(i + 1)
            for j, child in enumerate(row.children):
                child.prefix, child.number = f"c{i}-{j}", f"{i + 1}.{j + 1}"
        return self

    def all_rows(self):
        for row in self.rows:
            yield row
            yield from row.children

    # Rows -> rules ---------------------------------------------------------

    def compile(self) -> "Builder":
        """Make the rules from the rows, and mark each row's problems on it."""
        self.numbered()
        self.errors = []
        if not self.rows:
            self.errors.append("Add at least one condition.")
        if len(self.rows) > MAX_CONDITIONS:
            self.errors.append(f"Use at most {MAX_CONDITIONS} conditions.")
        for row in self.rows:
            _compile_row(row)
        self.rules = {"match": self.match, "conditions": [row.condition for row in self.rows]}
        if self.match not in dict(MATCHES):
            self.errors.append("Choose whether people must match all or any of the conditions.")
        if self.is_valid:
            try:
                rules_validate(self.rules)
            except RulesError as error:  # a limit the rows did not check
                self.errors.extend(error.errors)
        self.rows_json = rules_as_json(self.rules)
        if not self.json_errors:
            self.json_text = self.rows_json
        return self

    # Actions ---------------------------------------------------------------

    def apply(self, action: str) -> "Builder":
        """Add, remove or move a row, as the button named ``action`` asks:
        ``add:KIND`` or ``add:KIND:cI`` (into the group of row I),
        ``remove:PREFIX``, ``up:PREFIX``, ``down:PREFIX``. Anything else
        (``count``, ``json``) changes no row."""
        self.numbered()
        verb, _, rest = action.partition(":")
        if verb == "add":
            kind, _, parent = rest.partition(":")
            self._add(kind, parent)
        elif verb in ("remove", "up", "down"):
            siblings, i = self._find(rest)
            if siblings is not None:
                self._move(verb, siblings, i, rest)
        return self.numbered()

    def _add(self, kind, parent):
        if kind not in FIELDS:
            return
        if parent:
            siblings, i = self._find(parent)
            if siblings is not self.rows or not self.rows[i].is_group or kind == "group":
                return
            siblings = self.rows[i].children
        else:
            siblings = self.rows
        new = _row(kind)
        if kind == "group":
            new.children = [_row("attribute")]
        siblings.append(new)
        self.numbered()
        self.focus = f"id_{new.prefix}-{'match' if kind == 'group' else 'kind'}"

    def _move(self, verb, siblings, i, prefix):
        if verb == "remove":
            del siblings[i]
            self.numbered()
            if siblings:
                row = siblings[min(i, len(siblings) - 1)]
                self.focus = f"id_{row.prefix}-{'match' if row.is_group else 'kind'}"
            else:
                parent = prefix.rpartition("-")[0] if "-" in prefix else ""
                self.focus = f"{parent}-add" if parent else "add-condition"
            return
        j = i - 1 if verb == "up" else i + 1
        if 0 <= j < len(siblings):
            siblings[i], siblings[j] = siblings[j], siblings[i]
            self.numbered()
            edge = j == 0 if verb == "up" else j == len(siblings) - 1
            other = "down" if verb == "up" else "up"
            self.focus = f"{siblings[j].prefix}-{other if edge else verb}"

    def _find(self, prefix):
        for i, row in enumerate(self.rows):
            if row.prefix == prefix:
                return self.rows, i
            for j, child in enumerate(row.children):
                if child.prefix == prefix:
                    return row.children, j
        return None, None


def rules_as_json(rules) -> str:
    return json.dumps(rules, indent=2, ensure_ascii=False)


# Rules -> rows ---------------------------------------------------------------


def builder_from_rules(rules, *, catalogue=None) -> Builder:
    """The rows for valid rules; invalid ones (say, edited in Django admin)
    open as JSON, with the problems listed."""
    try:
        rules_validate(rules)
    except RulesError as error:
        return Builder(
            "all",
            [],
            json_text=rules_as_json(rules),
            json_errors=error.errors,
            source="json",
            catalogue=catalogue,
        )
    rows = [
        _group_row(c, catalogue) if _is_group(c) else _condition_row(c, catalogue)
        for c in rules["conditions"]
    ]
    return Builder(rules["match"], rows, catalogue=catalogue).compile()


def builder_blank(*, catalogue=None) -> Builder:
    """A new segment's builder: one empty condition to fill in."""
    return Builder("all", [_row("attribute")], catalogue=catalogue).compile()


def _is_group(node) -> bool:
    return "type" not in node


def _group_row(group, catalogue) -> Row:
    row = _row("group", match=group["match"])
    row.children = [_condition_row(c, catalogue) for c in group["conditions"]]
    return row


def _condition_row(condition, catalogue) -> Row:
    kind = condition["type"]
    if kind == "subscription":
        return _row("subscription", status=condition["status"], topic=condition.get("topic", ""))
    if kind == "event":
        return _row(
            "event",
            event=condition.get("event", ""),
            operator=condition["operator"],
            count=_text(condition.get("count", "")),
            within_days=_text(condition.get("within_days", "")),
        )
    name, operator = condition["field"], condition["operator"]
    if name in BUILTIN_FIELDS:
        return _row("contact", field=name, operator=operator, value=condition.get("value", ""))
    if "value" not in condition:
        value_type = (catalogue.kind_of(name) if catalogue else None) or "text"
    else:
        value_type = _value_type(condition["value"], operator)
    return _row(
        "attribute",
        field=name,
        operator=operator,
        value_type=value_type,
        value=_text(condition.get("value", "")),
    )


def _value_type(value, operator) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "date" if operator in ("gt", "lt") else "text"


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Form fields -> rows ---------------------------------------------------------


def builder_from_post(data, *, catalogue=None) -> Builder:
    """The builder as posted: its rows, or the JSON when that was edited.

    The page sends back the JSON it showed (``rules_shown``); JSON that
    differs from it was edited, and replaces the rows (a post with no
    ``rules_shown`` at all is JSON only, as a script might send).
    """
    builder = Builder(
        data.get("match", "all"), _rows_from_post(data, catalogue), catalogue=catalogue
    )
    text = data.get("rules", "")
    shown = data.get("rules_shown")
    if shown is None or _json_differs(text, shown):
        builder = _builder_from_json(text, builder, catalogue)
    return builder if builder.json_errors else builder.compile()


def _json_differs(text: str, shown: str) -> bool:
    try:
        return rules_from_json(text) != rules_from_json(shown)
    except ValueError:
        return text.replace("\r\n", "\n").strip() != shown.replace("\r\n", "\n").strip()


class JSONRefused(ValueError):
    """Rules JSON that cannot be read; the message says why, for the form."""


# A number with more digits than this is beyond 1e308, the largest a rule takes.
_MAX_DIGITS = 309


def rules_from_json(text: str):
    """The rules typed as JSON, or JSONRefused saying why not.

    Stricter than ``json.loads``, which reads NaN and Infinity, turns 1e400
    into infinity, raises a bare ValueError past 4,300 digits and
    RecursionError on deep nesting; and refuses text PostgreSQL cannot
    store (NUL, unpaired surrogates), which would otherwise reach the page
    in an error message.
    """

    def constant(name):
        raise JSONRefused(f"This JSON holds {name}, which is not a number: use a number like 30.")

    def whole(digits):
        if len(digits.lstrip("-")) > _MAX_DIGITS:
            raise JSONRefused(_TOO_LARGE.format(f"{len(digits):,} digits"))
        return int(digits)

    def decimal(written):
        number = float(written)
        if not math.isfinite(number):
            raise JSONRefused(_TOO_LARGE.format(written[:40]))
        return number

    try:
        rules = json.loads(text, parse_constant=constant, parse_int=whole, parse_float=decimal)
    except json.JSONDecodeError as error:
        raise JSONRefused(
            f"This is not valid JSON: line {error.lineno}, column {error.colno}: "
            f"{error.msg[0].lower()}{error.msg[1:]}."
        ) from None
    except RecursionError:
        raise JSONRefused("This is not valid JSON: nested too deeply.") from None
    if not _storable_throughout(rules):
        raise JSONRefused(
            "This JSON contains a character that cannot be saved "
            "(NUL, \\u0000, or an unpaired surrogate such as \\ud800)."
        )
    return rules


_TOO_LARGE = "This JSON holds a number too large to use ({}); use one between -1e308 and 1e308."


def _storable_throughout(value) -> bool:
    """Every text in the JSON, keys included, is storable (no recursion:
    the nesting can be as deep as the parser allowed)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def _builder_from_json(text: str, rows_builder: Builder, catalogue) -> Builder:
    if not text.strip():
        return _json_refused(text, rows_builder, ["This field is required."])
    try:
        rules = rules_from_json(text)
    except JSONRefused as refused:
        return _json_refused(text, rows_builder, [str(refused)])
    builder = builder_from_rules(rules, catalogue=catalogue)
    if builder.json_errors:
        return _json_refused(text, rows_builder, builder.json_errors)
    builder.source = "json"
    return builder


def _json_refused(text, rows_builder, errors) -> Builder:
    """Edited JSON that cannot be used: keep it as typed, with the reasons,
    and keep the rows as they were."""
    rows_builder.compile()
    rows_builder.json_text, rows_builder.json_errors = text, errors
    rows_builder.source = "json"
    return rows_builder


def _rows_from_post(data, catalogue) -> list[Row]:
    posted: dict[tuple, dict[str, str]] = {}
    for key in data:
        found = _NAME.match(key)
        if found:
            top, child, name = found.groups()
            where = (int(top),) if child is None else (int(top), int(child))
            posted.setdefault(where, {})[name] = data.get(key)
    rows: list[Row] = []
    by_top: dict[int, Row] = {}
    for where in sorted(posted):
        row = _posted_row(posted[where], catalogue)
        if row is None:
            continue
        if len(where) == 1:
            by_top[where[0]] = row
            rows.append(row)
        elif where[0] in by_top and by_top[where[0]].is_group and not row.is_group:
            by_top[where[0]].children.append(row)
    return rows


def _posted_row(values: dict[str, str], catalogue) -> Row | None:
    kind = values.get("kind", "")
    if kind not in FIELDS:
        return None
    if values.get("kind_was", kind) != kind:
        return _row(kind)  # a new kind of row starts afresh
    row = _row(kind, **{name: values[name] for name in FIELDS[kind] if name in values})
    if kind == "attribute" and values.get("field_was", row.values["field"]) != row.values["field"]:
        # Another attribute: offer the operators and the input of its type.
        observed = catalogue.kind_of(row.values["field"]) if catalogue else None
        if observed:
            row.values["value_type"] = observed
    return row


def builder_tidy(builder: Builder) -> Builder:
    """After a change of kind or type: an operator the row can offer.

    Only for re-rendering; saving never changes what was chosen, it says
    what does not fit."""
    for row in builder.all_rows():
        if row.kind == "attribute" and row.values["value_type"] not in OPERATORS:
            row.values["value_type"] = "text"
        has_operator = row.kind in ("attribute", "contact", "event")
        if has_operator and row.values["operator"] not in dict(row.operators):
            row.values["operator"] = row.operators[0][0]
        if row.kind == "event" and row.takes_count and not row.values["count"].strip():
            row.values["count"] = "1"
    return builder.compile()


# Rows -> rules, one row at a time ---------------------------------------------


def _compile_row(row: Row) -> None:
    row.errors = []
    if row.is_group:
        for child in row.children:
            _compile_row(child)
        if not row.children:
            row.errors.append("This group is empty: add a condition to it, or remove it.")
        if row.values["match"] not in dict(MATCHES):
            row.errors.append("Choose all or any.")
        row.condition = {
            "match": row.values["match"],
            "conditions": [child.condition for child in row.children],
        }
        return
    compile_kind = {
        "attribute": _compile_attribute,
        "contact": _compile_contact,
        "subscription": _compile_subscription,
        "event": _compile_event,
    }[row.kind]
    row.condition = compile_kind(row.values, row.errors)
    if not row.errors:
        try:
            rules_validate({"match": "all", "conditions": [row.condition]})
        except RulesError as error:
            row.errors.extend(message.partition(": ")[2] for message in error.errors)


def _compile_attribute(values, errors) -> dict:
    name, operator, value_type = values["field"], values["operator"], values["value_type"]
    if not name.strip():
        errors.append("Choose or type the name of an attribute.")
    elif len(name) > MAX_TEXT:
        errors.append(f"An attribute name has at most {MAX_TEXT} characters.")
    condition = {"type": "property", "field": name, "operator": operator}
    if operator not in dict(OPERATORS.get(value_type, [])):
        errors.append(f"Choose what to compare: “{operator}” does not apply to this type.")
        return condition
    if operator in ("exists", "not_exists"):
        return condition
    condition["value"] = _parse_value(values["value"], value_type, operator, errors)
    return condition


def _parse_value(raw: str, value_type: str, operator: str, errors):
    if value_type == "number":
        number = _parse_number(raw)
        if number is None:
            errors.append("Enter a number, like 30 or 2.5.")
            return raw
        return number
    if value_type == "date":
        if not _DATE.match(raw.strip()) or not _is_date(raw.strip()):
            errors.append("Enter a date, like 2024-03-01.")
            return raw
        return raw.strip()
    if value_type == "boolean":
        if raw not in ("true", "false"):
            errors.append("Choose yes or no.")
            return raw
        return raw == "true"
    if operator == "contains" and not raw:
        errors.append("Type the text to look for.")
    return raw


def _parse_number(raw: str):
    text = raw.strip()
    if _INTEGER.match(text):
        return int(text)
    if not _NUMBER.match(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _is_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _compile_contact(values, errors) -> dict:
    name, operator = values["field"], values["operator"]
    if name not in BUILTIN_FIELDS:
        errors.append("Choose email or user id.")
    condition = {"type": "property", "field": name, "operator": operator}
    if operator not in dict(CONTACT_OPERATORS):
        errors.append("Choose what to compare.")
    elif operator not in ("exists", "not_exists"):
        condition["value"] = values["value"]
        if operator == "contains" and not values["value"]:
            errors.append("Type the text to look for.")
    return condition


def _compile_subscription(values, errors) -> dict:
    condition = {"type": "subscription", "status": values["status"]}
    if values["status"] not in dict(STATUSES):
        errors.append("Choose subscribed or unsubscribed.")
    if values["topic"].strip():
        condition["topic"] = values["topic"]
        if len(values["topic"]) > MAX_TEXT:
            errors.append(f"A topic name has at most {MAX_TEXT} characters.")
    return condition


def _compile_event(values, errors) -> dict:
    condition: dict = {"type": "event"}
    if values["event"].strip():
        condition["event"] = values["event"]
        if len(values["event"]) > MAX_TEXT:
            errors.append(f"An event name has at most {MAX_TEXT} characters.")
    operator = values["operator"]
    condition["operator"] = operator
    if operator not in dict(EVENT_OPERATORS):
        errors.append("Choose done at least, done at most or not done.")
    elif operator != "not_done":
        lowest = 1 if operator == "at_least" else 0
        raw = values["count"].strip()
        if _WHOLE.match(raw) and lowest <= int(raw) <= MAX_COUNT:
            condition["count"] = int(raw)
        else:
            condition["count"] = values["count"]
            errors.append(f"Enter how many times: a whole number from {lowest} to {MAX_COUNT:,}.")
    days = values["within_days"].strip()
    if days:
        if _WHOLE.match(days) and 1 <= int(days) <= MAX_DAYS:
            condition["within_days"] = int(days)
        else:
            condition["within_days"] = values["within_days"]
            errors.append(
                f"Enter a number of days from 1 to {MAX_DAYS:,}, or leave it empty for all time."
            )
    return condition


def builder_attribute_names(builder: Builder) -> list[str]:
    """The custom attributes the rows use, in order, once each: the columns
    of the sample of members."""
    names: list[str] = []
    for row in builder.all_rows():
        name = row.values.get("field", "")
        if row.kind == "attribute" and name.strip() and name not in names:
            names.append(name)
    return names
