"""Erasing profiles: one piece of code for every way a person is deleted.

The segment deletion job and the API's single-user delete both call
:func:`profiles_erase`. It does not know the apps above it: it walks
``Profile._meta.related_objects`` and lets each foreign key say what happens
to its rows:

- ``on_delete=CASCADE``: the rows belong to the person and are deleted
  (events, preferences, segment memberships);
- ``on_delete=SET_NULL``: the rows are kept for reporting, unlinked from the
  profile, and the model's ``PERSONAL_FIELDS`` are cleared (messages, message
  activity).

Anything else is refused when the plan is built, so a table added next year
that points at Profile is either erased or stops the deletion loudly; it is
never silently left behind.

All statements are set-based (``= ANY(ids)``) and run in the caller's
transaction: nothing is loaded into Python but the batch's profile ids.
"""

from dataclasses import dataclass, field
from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction

from profiles.models import Profile

KEEP = "keep"
DELETE = "delete"


@dataclass(frozen=True)
class ErasureStep:
    label: str  # e.g. "profiles.event"
    action: str  # DELETE or KEEP
    sql: str

    def run(self, cursor, profile_ids: list[int]) -> int:
        cursor.execute(self.sql, [profile_ids])
        return cursor.rowcount


@dataclass
class ErasureResult:
    requested: int = 0
    deleted: int = 0
    skipped: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def count(self, label: str) -> int:
        return self.rows.get(label, 0)


def _cleared_value(model_field: models.Field) -> str:
    """SQL for the value a personal field is reset to."""
    if model_field.null:
        return "NULL"
    if isinstance(model_field, (models.CharField, models.TextField)):
        return "''"
    raise ImproperlyConfigured(
        f"{model_field.model._meta.label}.{model_field.name} is listed in PERSONAL_FIELDS "
        "but is neither nullable nor text, so erasure cannot clear it."
    )


@cache
def erasure_plan() -> tuple[ErasureStep, ...]:
    """The statements that erase a batch of profiles, children first.

    Built from the foreign keys to Profile; identifiers come from model
    metadata, never from input.
    """
    qn = connection.ops.quote_name
    keep_steps, delete_steps = [], []
    for relation in Profile._meta.related_objects:
        model = relation.related_model
        label = model._meta.label_lower
        table = qn(model._meta.db_table)
        if relation.many_to_many:
            through = relation.through._meta
            column = next(
                f.column for f in through.fields if f.is_relation and f.related_model is Profile
            )
            delete_steps.append(
                ErasureStep(
                    through.label_lower,
                    DELETE,
                    f"DELETE FROM {qn(through.db_table)} WHERE {qn(column)} = ANY(%s)",  # noqa: S608
                )
            )
            continue
        column = qn(relation.field.column)
        if relation.on_delete is models.CASCADE:
            if model._meta.related_objects:
                raise ImproperlyConfigured(
                    f"Erasure would cascade into {model._meta.label}, which other tables "
                    "reference; teach profiles.erasure how to erase those first."
                )
            delete_steps.append(
                ErasureStep(label, DELETE, f"DELETE FROM {table} WHERE {column} = ANY(%s)")  # noqa: S608
            )
        elif relation.on_delete is models.SET_NULL:
            assignments = [f"{column} = NULL"]
            for name in getattr(model, "PERSONAL_FIELDS", ()):
                model_field = model._meta.get_field(name)
                assignments.append(f"{qn(model_field.column)} = {_cleared_value(model_field)}")
            keep_steps.append(
                ErasureStep(
                    label,
                    KEEP,
                    f"UPDATE {table} SET {', '.join(assignments)} WHERE {column} = ANY(%s)",  # noqa: S608
                )
            )
        else:
            raise ImproperlyConfigured(
                f"{model._meta.label}.{relation.field.name} points at Profile with "
                f"on_delete={relation.on_delete.__name__}; erasure supports CASCADE (the rows "
                "are deleted with the person) and SET_NULL (kept, anonymized)."
            )
    return tuple(keep_steps + delete_steps)


def profile_tables() -> dict[str, str]:
    """Every table that holds a profile's data, with the column naming the
    profile: the profile table itself, then each table that points at it."""
    tables = {Profile._meta.db_table: Profile._meta.pk.column}
    for relation in Profile._meta.related_objects:
        if not relation.many_to_many:
            tables[relation.related_model._meta.db_table] = relation.field.column
    return tables


def profiles_erase(*, profile_ids: list[int]) -> ErasureResult:
    """Erase these profiles and everything that is theirs, in the current transaction.

    The profiles are locked first (``FOR UPDATE``, in id order so two callers
    cannot deadlock): an event ingested concurrently for one of them then
    waits for this transaction instead of racing it, and finds its profile
    gone. Ids that no longer exist are counted as skipped.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("profiles_erase() must run inside transaction.atomic().")
    result = ErasureResult(requested=len(set(profile_ids)))
    if not profile_ids:
        return result
    profile_table = connection.ops.quote_name(Profile._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {profile_table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
            [list(profile_ids)],
        )
        locked = [row[0] for row in cursor.fetchall()]
        result.skipped = result.requested - len(locked)
        if not locked:
            return result
        for step in erasure_plan():
            result.rows[step.label] = result.rows.get(step.label, 0) + step.run(cursor, locked)
        cursor.execute(f"DELETE FROM {profile_table} WHERE id = ANY(%s)", [locked])  # noqa: S608
        result.deleted = cursor.rowcount
    return result


def profile_erase(*, profile: Profile) -> ErasureResult:
    """Erase one profile (the API's delete), in its own transaction."""
    with transaction.atomic():
        return profiles_erase(profile_ids=[profile.pk])
