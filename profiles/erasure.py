"""Erasing profiles: one piece of code for every way a person is deleted.

The segment deletion job, the API's single-user delete and Django admin all
call :func:`profiles_erase`. It does not know the apps above it: it walks
``Profile._meta.related_objects`` and lets each foreign key say what happens
to its rows:

- ``on_delete=CASCADE``: the rows belong to the person and are deleted
  (events, preferences, segment memberships);
- ``on_delete=SET_NULL``: the rows are kept for reporting, unlinked from the
  profile, the model's ``PERSONAL_FIELDS`` are cleared, its
  ``PERSONAL_URL_FIELDS`` cut down to scheme, host and path (see
  :func:`url_kept_sql`), and ``anonymized_on`` is set to the day (messages,
  message activity).

Rows that hang off a kept row are the person's too, whether or not they carry
their own link to the profile: an open of the person's message with an empty
``profile`` still holds an IP address. So the children of every kept model
are anonymized through it (an activity row through its message).

Django admin's action log keeps ``str(obj)`` of what was edited or deleted
(a profile's email, "Launch to ada@example.com" for a message). For every
model above, the entries about the batch's rows are rewritten to
"<Model> of an erased person" with no change message.

Anything else is refused when the plan is built, so a table added next year
that points at Profile is either erased or stops the deletion loudly; it is
never silently left behind.

All statements are set-based (``= ANY(ids)``) and run in the caller's
transaction: nothing is loaded into Python but the batch's profile ids.
"""

import hashlib
import weakref
from dataclasses import dataclass, field
from functools import cache

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connection, models, transaction

from profiles.models import Profile

KEEP = "keep"
DELETE = "delete"
SCRUB = "scrub"
ANONYMIZED_ON = "anonymized_on"
ADMIN_LOG = "admin.logentry"

_SCHEME = "[A-Za-z][A-Za-z0-9+.-]*:"


def url_kept_sql(column: str) -> str:
    """SQL for what erasure keeps of the URL in ``column`` (quoted, or an alias).

    Kept: scheme, host (with port) and path, which is what a click report
    groups by. Dropped: the query string and fragment (reset tokens, emails,
    tracking ids), any ``user:password@`` before the host, every path segment
    with an ``@`` in it (an address in the path), and all but the scheme of a
    URL with no host (``mailto:ada@example.com`` keeps ``mailto:``). Applying
    it twice changes nothing, so ``verify_deletion`` checks a kept URL by
    comparing it with this. Use in a query run with parameters (``%%``).
    """
    return (
        f"CASE WHEN {column} ~ '^{_SCHEME}(?!//)' "
        f"THEN substring({column} from '^{_SCHEME}') "
        "ELSE regexp_replace(regexp_replace("
        f"substring({column} from '^[^?#]*'), '^({_SCHEME}//)[^/]*@', '\\1'), "
        "'/[^/]*(@|%%40)[^/]*', '/[erased]', 'gi') END"
    )


def erased_repr(model: type[models.Model]) -> str:
    """What Django admin's log says about a row of an erased person."""
    return f"{str(model._meta.verbose_name).capitalize()} of an erased person"


@dataclass(frozen=True)
class ErasureStep:
    label: str  # e.g. "profiles.event"
    action: str  # DELETE, KEEP or SCRUB
    sql: str
    params: tuple[tuple[str, str], ...] = ()

    def run(self, cursor, profile_ids: list[int]) -> int:
        cursor.execute(self.sql, {"ids": profile_ids, **dict(self.params)})
        return cursor.rowcount

    def run_returning(self, cursor, profile_ids: list[int], column: str) -> tuple[int, set]:
        """Run a DELETE step; its row count and the distinct values of
        ``column`` among the rows it deleted, in the same statement."""
        if self.action != DELETE:
            raise ValueError(f"Only a DELETE step returns what it deleted, not {self.label}.")
        qn = connection.ops.quote_name
        cursor.execute(
            f"WITH gone AS ({self.sql} RETURNING {qn(column)} AS value) "  # noqa: S608
            "SELECT count(*), array_agg(DISTINCT value) FROM gone",
            {"ids": profile_ids, **dict(self.params)},
        )
        count, values = cursor.fetchone()
        return count, set(values or ())

    @property
    def about(self) -> tuple[str, str] | None:
        """(app label, model name) whose admin log entries a SCRUB step rewrites."""
        if self.action != SCRUB:
            return None
        params = dict(self.params)
        return params["app"], params["model"]


@dataclass(frozen=True)
class KeptRows:
    """A model whose rows stay after erasure, and how a batch's rows are found:
    through its own link to Profile, and/or through the kept rows it hangs off."""

    model: type[models.Model]
    profile_field: models.ForeignKey | None
    parents: tuple[tuple[type[models.Model], models.ForeignKey], ...] = ()


@dataclass
class ErasureResult:
    requested: int = 0
    deleted: int = 0
    skipped: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    # For each label asked for in ``returning``: the distinct values of the
    # column among the rows that step deleted.
    returned: dict[str, set] = field(default_factory=dict)

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


def personal_assignments(model: type[models.Model]) -> list[str]:
    """``column = value`` for each personal field of ``model``, as erasure sets it."""
    qn = connection.ops.quote_name
    assignments = []
    for name in getattr(model, "PERSONAL_FIELDS", ()):
        model_field = model._meta.get_field(name)
        assignments.append(f"{qn(model_field.column)} = {_cleared_value(model_field)}")
    for name in getattr(model, "PERSONAL_URL_FIELDS", ()):
        column = qn(model._meta.get_field(name).column)
        assignments.append(f"{column} = {url_kept_sql(column)}")
    return assignments


def personal_data_left_sql(model: type[models.Model], alias: str) -> str:
    """SQL that is true for a row of ``model`` (as ``alias``) that erasure
    would still change: a personal field set, or a URL longer than it keeps."""
    qn = connection.ops.quote_name
    conditions = []
    for name in getattr(model, "PERSONAL_FIELDS", ()):
        model_field = model._meta.get_field(name)
        column = f"{alias}.{qn(model_field.column)}"
        conditions.append(f"{column} IS NOT NULL" if model_field.null else f"{column} <> ''")
    for name in getattr(model, "PERSONAL_URL_FIELDS", ()):
        column = f"{alias}.{qn(model._meta.get_field(name).column)}"
        conditions.append(f"{column} IS DISTINCT FROM {url_kept_sql(column)}")
    return " OR ".join(conditions) or "false"


@cache
def kept_rows() -> tuple[KeptRows, ...]:
    """The kept models, children of kept models first (they are found
    through their parent's link, so they must be anonymized before it is cleared)."""
    direct = {}
    for relation in Profile._meta.related_objects:
        if not relation.many_to_many and relation.on_delete is models.SET_NULL:
            model = relation.related_model
            try:
                marker = model._meta.get_field(ANONYMIZED_ON)
            except FieldDoesNotExist:
                marker = None
            if not isinstance(marker, models.DateField):
                raise ImproperlyConfigured(
                    f"{model._meta.label} keeps rows of erased profiles (SET_NULL) but has no "
                    f"DateField {ANONYMIZED_ON!r}: verify_deletion finds a job's kept rows by it."
                )
            direct[model] = relation.field
    parents: dict[type[models.Model], list] = {}
    for parent in direct:
        for child_relation in parent._meta.related_objects:
            child = child_relation.related_model
            if child_relation.many_to_many or child._meta.related_objects:
                raise ImproperlyConfigured(
                    f"{child._meta.label} hangs off {parent._meta.label}, which erasure keeps, "
                    "in a way it cannot follow; teach profiles.erasure how to anonymize it."
                )
            parents.setdefault(child, []).append((parent, child_relation.field))
    children = [
        KeptRows(child, direct.get(child), tuple(found)) for child, found in parents.items()
    ]
    others = [KeptRows(model, link) for model, link in direct.items() if model not in parents]
    return tuple(children + others)


def rows_of_batch_sql(kept: KeptRows) -> str:
    """SQL condition for the batch's rows of a kept model, on its own table
    (unqualified columns, ``%(ids)s`` for the batch's profile ids)."""
    qn = connection.ops.quote_name
    conditions = []
    if kept.profile_field is not None:
        conditions.append(f"{qn(kept.profile_field.column)} = ANY(%(ids)s)")
    for parent, fk in kept.parents:
        link = next(r.field for r in Profile._meta.related_objects if r.related_model is parent)
        conditions.append(
            f"{qn(fk.column)} = ANY(ARRAY(SELECT {qn(parent._meta.pk.column)} "  # noqa: S608
            f"FROM {qn(parent._meta.db_table)} WHERE {qn(link.column)} = ANY(%(ids)s)))"
        )
    if len(conditions) == 1:
        return conditions[0]
    # Each way of finding the rows is its own index scan, and the union of
    # their ids is looked up by primary key. Written as "a OR b", the planner
    # scans the whole table (b's array is only known at run time): 0.4 s per
    # batch at 100k profiles, growing with the table, against 5 ms this way.
    pk = qn(kept.model._meta.pk.column)
    table = qn(kept.model._meta.db_table)
    union = " UNION ".join(
        f"SELECT {pk} FROM {table} WHERE {condition}"  # noqa: S608
        for condition in conditions
    )
    return f"{pk} = ANY(ARRAY({union}))"


def _admin_log_step(model: type[models.Model], where: str) -> ErasureStep:
    """Rewrite the admin log entries about the batch's rows of ``model``.

    :func:`profiles_erase` runs it only when the log holds an entry about the
    model at all (see :func:`_logged_models`): usually it holds none about
    events or preferences, and then their rows are not even looked up.
    """
    from django.contrib.admin.models import LogEntry

    qn = connection.ops.quote_name
    sql = (
        f"UPDATE {qn(LogEntry._meta.db_table)} SET object_repr = %(repr)s, "  # noqa: S608
        "change_message = '' WHERE content_type_id = (SELECT id FROM django_content_type "
        "WHERE app_label = %(app)s AND model = %(model)s) "
        f"AND object_id = ANY(ARRAY(SELECT {qn(model._meta.pk.column)}::text "
        f"FROM {qn(model._meta.db_table)} WHERE {where}))"
    )
    params = (
        ("app", model._meta.app_label),
        ("model", model._meta.model_name),
        ("repr", erased_repr(model)),
    )
    return ErasureStep(ADMIN_LOG, SCRUB, sql, params)


def _logged_models(cursor, steps: tuple[ErasureStep, ...]) -> set[tuple[str, str]]:
    """(app label, model name) of the scrub steps whose model the admin log
    mentions at all: one cheap query instead of one statement per model."""
    wanted = [step.about for step in steps if step.about is not None]
    if not wanted:
        return set()
    cursor.execute(
        "SELECT ct.app_label, ct.model FROM django_content_type ct "
        "JOIN unnest(%s::text[], %s::text[]) AS w(app, model) "
        "ON ct.app_label = w.app AND ct.model = w.model "
        "WHERE EXISTS (SELECT 1 FROM django_admin_log l WHERE l.content_type_id = ct.id)",
        [[app for app, _ in wanted], [model for _, model in wanted]],
    )
    return {tuple(row) for row in cursor.fetchall()}


@cache
def erasure_plan() -> tuple[ErasureStep, ...]:
    """The statements that erase a batch of profiles, in the order they must run.

    Admin log entries first (they find their rows through the links erasure
    then clears), then kept rows (children before the parents they are found
    through), then deleted rows. Built from the foreign keys to Profile;
    identifiers come from model metadata, never from input.
    """
    qn = connection.ops.quote_name
    keep_steps, delete_steps = [], []
    found: dict[type[models.Model], list[str]] = {Profile: ["id = ANY(%(ids)s)"]}
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
                    f"DELETE FROM {qn(through.db_table)} WHERE {qn(column)} = ANY(%(ids)s)",  # noqa: S608
                )
            )
            continue
        where = f"{qn(relation.field.column)} = ANY(%(ids)s)"
        if relation.on_delete is models.CASCADE:
            if model._meta.related_objects:
                raise ImproperlyConfigured(
                    f"Erasure would cascade into {model._meta.label}, which other tables "
                    "reference; teach profiles.erasure how to erase those first."
                )
            delete_steps.append(
                ErasureStep(label, DELETE, f"DELETE FROM {table} WHERE {where}")  # noqa: S608
            )
            found.setdefault(model, []).append(where)
        elif relation.on_delete is not models.SET_NULL:
            raise ImproperlyConfigured(
                f"{model._meta.label}.{relation.field.name} points at Profile with "
                f"on_delete={relation.on_delete.__name__}; erasure supports CASCADE (the rows "
                "are deleted with the person) and SET_NULL (kept, anonymized)."
            )
    for kept in kept_rows():
        model = kept.model
        where = rows_of_batch_sql(kept)
        found.setdefault(model, []).append(where)
        assignments = []
        if kept.profile_field is not None:
            assignments.append(f"{qn(kept.profile_field.column)} = NULL")
        assignments += personal_assignments(model)
        if any(f.name == ANONYMIZED_ON for f in model._meta.concrete_fields):
            column = model._meta.get_field(ANONYMIZED_ON).column
            assignments.append(f"{qn(column)} = CURRENT_DATE")
        if assignments:
            keep_steps.append(
                ErasureStep(
                    model._meta.label_lower,
                    KEEP,
                    f"UPDATE {qn(model._meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
                    f"WHERE {where}",
                )
            )
    scrub_steps = []
    if apps.is_installed("django.contrib.admin"):
        scrub_steps = [
            _admin_log_step(model, " OR ".join(f"({c})" for c in conditions))
            for model, conditions in found.items()
        ]
    return tuple(scrub_steps + keep_steps + delete_steps)


def profile_tables() -> dict[str, str]:
    """Every table that holds a profile's data, with the column naming the
    profile: the profile table itself, then each table that points at it."""
    tables = {Profile._meta.db_table: Profile._meta.pk.column}
    for relation in Profile._meta.related_objects:
        if not relation.many_to_many:
            tables[relation.related_model._meta.db_table] = relation.field.column
    return tables


def profiles_erase(
    *,
    profile_ids: list[int],
    returning: dict[str, str] | None = None,
) -> ErasureResult:
    """Erase these profiles and everything that is theirs, in the current transaction.

    The profiles are locked first (``FOR UPDATE``, in id order so two callers
    cannot deadlock): an event ingested concurrently for one of them then
    waits for this transaction instead of racing it, and finds its profile
    gone. Ids that no longer exist are counted as skipped. (The deletion
    job's batches run the same plan inside the database, through
    :func:`erasure_function_sql`; this is the API's, the admin's and the
    job's retry of set-aside profiles.)

    ``returning`` maps a DELETE step's label to one of its table's columns:
    ``result.returned[label]`` is then the distinct values of that column
    among the rows deleted, taken from the DELETE itself (the deletion job
    learns which segments lost members this way).

    Foreign keys are checked statement by statement (``SET CONSTRAINTS ALL
    IMMEDIATE``), not at commit as Django declares them: the plan's order
    must then hold on its own, so a mistake in it, or a key added later
    that is not deferrable, fails every test that erases instead of only
    production. It costs nothing measurable (the same checks run, earlier)
    and lasts to the end of the caller's transaction, which is harmless for
    what callers do after it (the job's cursor update, an admin response).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("profiles_erase() must run inside transaction.atomic().")
    returning = returning or {}
    result = ErasureResult(requested=len(set(profile_ids)))
    if not profile_ids:
        return result
    profile_table = connection.ops.quote_name(Profile._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f"SELECT id FROM {profile_table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
            [list(profile_ids)],
        )
        locked_ids = [row[0] for row in cursor.fetchall()]
        result.skipped = result.requested - len(locked_ids)
        if not locked_ids:
            return result
        plan = erasure_plan()
        logged = _logged_models(cursor, plan)
        for step in plan:
            if step.about is not None and step.about not in logged:
                continue
            if step.label in returning:
                count, values = step.run_returning(cursor, locked_ids, returning[step.label])
                result.returned.setdefault(step.label, set()).update(values)
            else:
                count = step.run(cursor, locked_ids)
            result.rows[step.label] = result.rows.get(step.label, 0) + count
        cursor.execute(f"DELETE FROM {profile_table} WHERE id = ANY(%s)", [locked_ids])  # noqa: S608
        result.deleted = cursor.rowcount
    return result


# Names of the batch functions created in a database session, by connection
# (a new connection is a new session, whose temporary schema is empty).
_session_functions: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()
FUNCTION_RESULT = ("erased_label", "erased_rows", "erased_values")


def _pl_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def erasure_function_sql(returning: tuple[tuple[str, str], ...] = ()) -> tuple[str, str]:
    """(name, ``CREATE FUNCTION`` statement) of a PL/pgSQL function that runs
    :func:`erasure_plan` over an array of locked profile ids, in the caller's
    transaction, and returns one row per step run: its label, its row count
    and, for the labels in ``returning`` (label, integer column), the
    distinct values of the column among the rows it deleted.

    It is the plan's own statements (``%(ids)s`` becomes the function's
    argument), with ``SET CONSTRAINTS ALL IMMEDIATE`` first, each admin log
    step only when the log mentions its model (as :func:`profiles_erase`
    decides with :func:`_logged_models`), and the profiles deleted last. The
    function lives in the session's temporary schema; its name is a digest
    of its text, so a changed plan is a new function. The deletion job's
    batch function (``segments.deletion.batch``) calls it.
    """
    qn = connection.ops.quote_name
    wanted = dict(returning)
    label_var, rows_var, values_var = FUNCTION_RESULT
    lines = ["  SET CONSTRAINTS ALL IMMEDIATE;"]
    for step in erasure_plan():
        values = {"ids": "erase_ids", **{k: _pl_literal(v) for k, v in step.params}}
        # The steps are written for psycopg's %-parameters: formatting them
        # with the argument's name turns %(ids)s into it and %% into %.
        statement = step.sql % values
        if step.label in wanted:
            if step.action != DELETE:
                raise ValueError(f"Only a DELETE step returns what it deleted, not {step.label}.")
            body = (
                f"WITH gone AS ({statement} RETURNING {qn(wanted[step.label])} AS value) "  # noqa: S608
                f"SELECT count(*), array_agg(DISTINCT value) INTO {rows_var}, {values_var} "
                "FROM gone;"
            )
        else:
            body = (
                f"{statement};\n    GET DIAGNOSTICS {rows_var} = ROW_COUNT; {values_var} := NULL;"
            )
        body += f"\n    {label_var} := {_pl_literal(step.label)}; RETURN NEXT;"
        if step.about is not None:
            app, model = step.about
            body = (
                "IF EXISTS (SELECT 1 FROM django_admin_log l JOIN django_content_type ct "  # noqa: S608
                f"ON ct.id = l.content_type_id WHERE ct.app_label = {_pl_literal(app)} "
                f"AND ct.model = {_pl_literal(model)}) THEN\n    {body}\n  END IF;"
            )
        lines.append(f"  {body}")
    table = qn(Profile._meta.db_table)
    lines.append(
        f"  DELETE FROM {table} WHERE id = ANY(erase_ids);\n"  # noqa: S608
        f"  GET DIAGNOSTICS {rows_var} = ROW_COUNT; {values_var} := NULL;\n"
        f"  {label_var} := {_pl_literal(Profile._meta.label_lower)}; RETURN NEXT;"
    )
    body = "\n".join(lines)
    name = "vero_erase_" + hashlib.sha256(body.encode()).hexdigest()[:16]
    create = (
        f"CREATE OR REPLACE FUNCTION pg_temp.{name}(erase_ids bigint[]) "
        f"RETURNS TABLE ({label_var} text, {rows_var} bigint, {values_var} bigint[]) "
        f"LANGUAGE plpgsql AS $erase$\nBEGIN\n{body}\nEND\n$erase$"
    )
    return name, create


def session_function_ensure(cursor, name: str, create: str) -> None:
    """Create this ``pg_temp`` function in the current session unless it is
    known to exist there already.

    Created in the caller's transaction: if that rolls back, so does the
    function, so it is only known to exist once that commits (and a new
    connection, a new session, starts with none)."""
    session = connection.connection
    if name not in _session_functions.get(session, ()):
        cursor.execute(create)
        transaction.on_commit(lambda: _session_functions.setdefault(session, set()).add(name))


def erasure_function_ensure(cursor, returning: dict[str, str]) -> str:
    """The name of the erasure function for ``returning``, created in this
    session if need be (see :func:`erasure_function_sql`)."""
    name, create = erasure_function_sql(tuple(sorted(returning.items())))
    session_function_ensure(cursor, name, create)
    return name


def profile_erase(*, profile: Profile) -> ErasureResult:
    """Erase one profile (the API's delete), in its own transaction."""
    with transaction.atomic():
        return profiles_erase(profile_ids=[profile.pk])
