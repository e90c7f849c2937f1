"""Writes that arrive through the ingestion API: identify, track, edit, delete.

Profiles are deleted while data keeps arriving (a segment deletion can run
for an hour), so every write here is shaped around that:

- A write for an existing profile first locks its row. Events and identify
  take ``FOR KEY SHARE``: it lets any number of writers through at once but
  conflicts with the ``FOR UPDATE`` that :func:`profiles.erasure.profiles_erase`
  takes before it deletes. So either the erasure batch waits for our short
  transaction (and then erases what we wrote too), or we wait for the batch
  and, re-reading the row under READ COMMITTED, find it gone and create a
  new profile. An event is therefore never inserted for a profile that is
  deleted before we commit, and never fails its (deferred) foreign key check.
- A profile is created with ``INSERT ... ON CONFLICT DO NOTHING`` on the
  unique ``user_id``, so two requests identifying the same new id at once
  make one profile; a profile known only by email is created under a
  transaction-scoped advisory lock on the address, for the same reason.
- Waiting is bounded by ``lock_timeout``: an erasure batch takes a fraction
  of a second, so a longer wait means something is wrong, and the client is
  told to retry (503) rather than left hanging.

Re-identification after deletion needs no special case: the old row is
gone, so the id or email is simply unknown and a brand-new profile is made,
subscribed by default. Message activity that erasure anonymized points at
no profile and is not linked again.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from profiles.api_input import IdentifyCall, Identity, TagsChange, TrackCall
from profiles.erasure import ErasureResult, profiles_erase
from profiles.models import ApiKey, Event, Profile, SeenMessage
from profiles.suppression import Suppressed, SuppressedMeanwhile, suppressed_identities

LOCK_TIMEOUT = "5s"
ATTEMPTS = 3
# SQLSTATEs after which running the whole transaction again may succeed.
DEADLOCK_DETECTED, SERIALIZATION_FAILURE = "40P01", "40001"
LOCK_NOT_AVAILABLE = "55P03"
ADVISORY_NAMESPACE = "profiles.email:"


class ProfileNotFound(Exception):
    pass


class UserIdTaken(Exception):
    pass


class IngestionBusy(Exception):
    """Waited too long on a lock; the client should retry later."""


@dataclass(frozen=True)
class ProfileRef:
    pk: int
    created: bool


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    suppressed: int = 0


def _sqlstate(exc: Exception) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None)


def ingestion_transaction(function: Callable) -> Callable:
    """Run ``function`` in its own short transaction, or join the caller's.

    As the outermost transaction it sets ``lock_timeout`` and runs the whole
    transaction again after a deadlock (which PostgreSQL resolves by failing
    one side, possibly ours), or after it created a profile for a person
    suppressed meanwhile (``SuppressedMeanwhile``); nothing is half-applied
    in between.
    """

    @wraps(function)
    def wrapper(*args, **kwargs):
        if connection.in_atomic_block:
            # A savepoint, so a refusal (ProfileNotFound...) leaves the
            # caller's transaction usable.
            with transaction.atomic():
                return function(*args, **kwargs)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT]
                        )
                    return function(*args, **kwargs)
            except SuppressedMeanwhile:
                if attempt == ATTEMPTS:
                    raise IngestionBusy("The profile kept changing under us.") from None
                continue
            except OperationalError as exc:
                state = _sqlstate(exc)
                if state == LOCK_NOT_AVAILABLE:
                    raise IngestionBusy("Waited too long for a lock.") from exc
                if state not in (DEADLOCK_DETECTED, SERIALIZATION_FAILURE) or attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return wrapper


# --- finding and creating profiles -------------------------------------------

_TABLE = connection.ops.quote_name(Profile._meta.db_table)
_SELECT_BY_USER_ID = f"SELECT id FROM {_TABLE} WHERE user_id = %s FOR KEY SHARE"  # noqa: S608
_LOCK_BY_USER_ID = f"SELECT id FROM {_TABLE} WHERE user_id = %s FOR UPDATE"  # noqa: S608
_SELECT_BY_EMAIL = f"SELECT id FROM {_TABLE} WHERE email = %s ORDER BY id LIMIT 1 FOR KEY SHARE"  # noqa: S608
_INSERT = (
    f"INSERT INTO {_TABLE} "  # noqa: S608
    "(user_id, email, properties, tags, subscribed, unsubscribed_at, created_at, updated_at) "
    "VALUES (%s, %s, %s::jsonb, '{}', true, NULL, now(), now()) "
    "ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO NOTHING RETURNING id"
)
# A call without an email keeps the profile's; one whose key may not replace
# emails (a track key, which a web page shows to anyone) sets it only where
# the profile has none.
_MERGE = (
    f"UPDATE {_TABLE} SET properties = properties || %s::jsonb, "  # noqa: S608
    "email = CASE WHEN %s = '' OR (NOT %s AND email <> '') THEN email ELSE %s END, "
    "updated_at = now() WHERE id = %s"
)


def _email_lock(cursor, email: str) -> None:
    digest = hashlib.blake2b((ADVISORY_NAMESPACE + email).encode(), digest_size=8).digest()
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


def _profile_for_write(cursor, identity: Identity, *, properties: dict | None = None) -> ProfileRef:
    """The profile for ``identity``, key-share locked until commit, created if unknown.

    Looked up by id when there is one (then the email plays no part in
    finding it), else by email. A new profile starts with ``properties``.
    """
    if identity.user_id is None:
        _email_lock(cursor, identity.email)
    for _ in range(ATTEMPTS):
        if identity.user_id is not None:
            cursor.execute(_SELECT_BY_USER_ID, [identity.user_id])
        else:
            cursor.execute(_SELECT_BY_EMAIL, [identity.email])
        row = cursor.fetchone()
        if row:
            return ProfileRef(row[0], created=False)
        cursor.execute(_INSERT, [identity.user_id, identity.email, json.dumps(properties or {})])
        row = cursor.fetchone()
        if row:
            return ProfileRef(row[0], created=True)
        # Another transaction holds the id: a concurrent identify that has
        # just committed, or a profile being erased. Look again.
    raise IngestionBusy("The profile kept changing under us.")


def _existing_profile(identity: Identity, *, key_change: bool = False) -> Profile:
    """The profile for ``identity``, row-locked, or ProfileNotFound.

    A row an erasure batch holds is waited for and then found gone.
    """
    profiles = Profile.objects.select_for_update(no_key=not key_change)
    if identity.user_id is not None:
        profiles = profiles.filter(user_id=identity.user_id)
    else:
        profiles = profiles.filter(email=identity.email).order_by("pk")
    profile = profiles.first()
    if profile is None:
        raise ProfileNotFound(_describe(identity))
    return profile


def _describe(identity: Identity) -> str:
    if identity.user_id is not None:
        return f"No profile has the id {identity.user_id!r}."
    return f"No profile has the email {identity.email!r}."


def _identify(
    cursor,
    call: IdentifyCall,
    known: dict[str, int] | None = None,
    *,
    may_replace_email: bool = True,
) -> ProfileRef:
    ref = _lookup_known(known, call.identity) or _profile_for_write(
        cursor, call.identity, properties=call.data
    )
    if not ref.created:
        data = json.dumps(call.data)
        email = call.identity.email
        cursor.execute(_MERGE, [data, email, may_replace_email, email, ref.pk])
    _remember(known, call.identity, ref)
    return ref


def _event(cursor, call: TrackCall, known: dict[str, int] | None = None) -> Event:
    ref = _lookup_known(known, call.identity) or _profile_for_write(cursor, call.identity)
    _remember(known, call.identity, ref)
    return _event_row(ref, call)


def _event_row(ref: ProfileRef, call: TrackCall) -> Event:
    return Event(
        profile_id=ref.pk, name=call.name, properties=call.data, occurred_at=call.occurred_at
    )


def _lookup_known(known: dict[str, int] | None, identity: Identity) -> ProfileRef | None:
    if known is None or identity.user_id not in known:
        return None
    return ProfileRef(known[identity.user_id], created=False)


def _remember(known: dict[str, int] | None, identity: Identity, ref: ProfileRef) -> None:
    if known is not None and identity.user_id is not None:
        known[identity.user_id] = ref.pk


# --- the operations -----------------------------------------------------------


def _refuse_suppressed(cursor, identity: Identity) -> None:
    """Raise Suppressed for a suppressed user id or email (one indexed query)."""
    if suppressed_identities(cursor, [identity]):
        raise Suppressed


def _check_created(cursor, identities: list[Identity]) -> None:
    """After creating profiles: a person suppressed while we waited for their
    old row (their deletion batch committed meanwhile) must not come back.

    Only new profiles can be that: an existing one is key-share locked by
    us, so its erasure, and the suppression written with it, comes after
    our commit (and erases what we wrote). Costs a query only when a
    profile was created.
    """
    if identities and suppressed_identities(cursor, identities):
        raise SuppressedMeanwhile


@ingestion_transaction
def profile_identify(*, call: IdentifyCall, may_replace_email: bool = True) -> ProfileRef:
    """Create or update the profile: ``data`` is merged into its properties,
    a given email replaces the old one (unless ``may_replace_email`` is
    False: then it is set only where the profile has none). A new profile
    is subscribed.

    Suppressed people (``profiles.suppression``) raise Suppressed, writing nothing.
    """
    with connection.cursor() as cursor:
        _refuse_suppressed(cursor, call.identity)
        ref = _identify(cursor, call, may_replace_email=may_replace_email)
        if ref.created:
            _check_created(cursor, [call.identity])
        return ref


@ingestion_transaction
def event_track(*, call: TrackCall) -> Event:
    """Record an event, creating its profile (subscribed) if it is unknown.

    An existing profile is not changed, not even its email: that is what
    identify is for. Suppressed people raise Suppressed, writing nothing.
    """
    with connection.cursor() as cursor:
        _refuse_suppressed(cursor, call.identity)
        ref = _profile_for_write(cursor, call.identity)
        if ref.created:
            _check_created(cursor, [call.identity])
    event = _event_row(ref, call)
    event.save(force_insert=True)
    return event


@ingestion_transaction
def profile_edit(*, identity: Identity, changes: dict) -> Profile:
    """Merge ``changes`` into an existing profile's properties."""
    profile = _existing_profile(identity)
    profile.properties = {**profile.properties, **changes}
    profile.save(update_fields=["properties", "updated_at"])
    return profile


@ingestion_transaction
def profile_tags_edit(*, change: TagsChange) -> Profile:
    """Add and remove tags; existing tags keep their order, new ones go last."""
    profile = _existing_profile(change.identity)
    tags = [tag for tag in profile.tags if tag not in change.remove]
    tags += [tag for tag in change.add if tag not in tags]
    profile.tags = tags
    profile.save(update_fields=["tags", "updated_at"])
    return profile


@ingestion_transaction
def profile_reidentify(*, user_id: str, new_user_id: str) -> Profile:
    """Give a profile a new id; refused if another profile already has it."""
    profile = _existing_profile(Identity(user_id=user_id, email=""), key_change=True)
    if new_user_id == user_id:
        return profile
    if Profile.objects.filter(user_id=new_user_id).exists():
        raise UserIdTaken(f"Another profile already has the id {new_user_id!r}.")
    profile.user_id = new_user_id
    try:
        with transaction.atomic():
            profile.save(update_fields=["user_id", "updated_at"])
    except IntegrityError:
        raise UserIdTaken(f"Another profile already has the id {new_user_id!r}.") from None
    return profile


@ingestion_transaction
def profile_unsubscribe(*, identity: Identity) -> Profile:
    """Unsubscribe from all messages; unsubscribing again keeps the first date."""
    profile = _existing_profile(identity)
    if profile.subscribed:
        profile.subscribed = False
        profile.unsubscribed_at = timezone.now()
        profile.save(update_fields=["subscribed", "unsubscribed_at", "updated_at"])
    return profile


@ingestion_transaction
def profile_resubscribe(*, identity: Identity) -> Profile:
    profile = _existing_profile(identity)
    if not profile.subscribed:
        profile.subscribed = True
        profile.unsubscribed_at = None
        profile.save(update_fields=["subscribed", "unsubscribed_at", "updated_at"])
    return profile


@ingestion_transaction
def profile_delete(*, user_id: str) -> ErasureResult:
    """Erase one profile exactly as a segment deletion would (``profiles.erasure``).

    The profile is locked by the id the client named, in the transaction
    that erases it: ``FOR UPDATE`` waits for a reidentify or an identify in
    flight and then checks ``user_id`` again on the row as committed. A
    primary key looked up first and erased later could by then belong to
    someone else's id (u1 reidentified to u2, a new u1 identified).
    """
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_BY_USER_ID, [user_id])
        row = cursor.fetchone()
    result = profiles_erase(profile_ids=[row[0]] if row else [])
    if not result.deleted:
        # Unknown, or erased or renamed by someone else while we waited.
        raise ProfileNotFound(_describe(Identity(user_id=user_id, email="")))
    return result


@ingestion_transaction
def segment_batch_apply(
    *, api_key: ApiKey, calls: list[IdentifyCall | TrackCall | None]
) -> BatchResult:
    """Apply a Segment batch in order, all or nothing.

    A ``messageId`` this key has sent before is skipped: it is recorded in
    the same transaction, so only a batch that committed counts as seen.
    Existing profiles are locked up front in id order, the order erasure
    locks them in, so the two cannot deadlock over them. Calls for suppressed
    people are then discarded (one query for the batch) and counted in
    ``suppressed``.
    """
    result = BatchResult(ignored=sum(call is None for call in calls))
    calls = _first_sight(api_key=api_key, calls=[call for call in calls if call is not None])
    result.duplicates = len(calls) - sum(call is not None for call in calls)
    calls = [call for call in calls if call is not None]
    events = []
    with connection.cursor() as cursor:
        user_ids = sorted({c.identity.user_id for c in calls if c.identity.user_id is not None})
        cursor.execute(
            f"SELECT user_id, id FROM {_TABLE} WHERE user_id = ANY(%s) "  # noqa: S608
            "ORDER BY id FOR KEY SHARE",
            [user_ids],
        )
        known = dict(cursor.fetchall())
        # After the lock above: a deletion batch we waited for has committed,
        # and with it any suppression of its people.
        suppressed = suppressed_identities(cursor, [c.identity for c in calls])
        if suppressed:
            result.suppressed = sum(c.identity in suppressed for c in calls)
            calls = [c for c in calls if c.identity not in suppressed]
        maybe_new = [c.identity for c in calls if c.identity.user_id not in known]
        for call in calls:
            if isinstance(call, IdentifyCall):
                _identify(cursor, call, known, may_replace_email=api_key.scope == ApiKey.Scope.FULL)
            else:
                events.append(_event(cursor, call, known))
        _check_created(cursor, maybe_new)
    Event.objects.bulk_create(events)
    result.applied = len(calls)
    return result


def _first_sight(*, api_key: ApiKey, calls: list) -> list:
    """``calls`` with those whose messageId was seen before replaced by None."""
    ids = [call.message_id for call in calls if call.message_id is not None]
    if not ids:
        return calls
    table = connection.ops.quote_name(SeenMessage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (api_key_id, message_id, received_at) "  # noqa: S608
            "SELECT %s, message_id, now() FROM unnest(%s::text[]) AS message_id "
            "ON CONFLICT (api_key_id, message_id) DO NOTHING RETURNING message_id",
            [api_key.pk, sorted(set(ids))],
        )
        new = {row[0] for row in cursor.fetchall()}
    kept = []
    for call in calls:
        if call.message_id is None:
            kept.append(call)
        elif call.message_id in new:
            new.discard(call.message_id)  # a repeat inside this batch is a duplicate too
            kept.append(call)
        else:
            kept.append(None)
    return kept


def seen_messages_prune(*, before: datetime) -> int:
    """Forget messageIds received before ``before``; clients retry within minutes."""
    deleted, _ = SeenMessage.objects.filter(received_at__lt=before).delete()
    return deleted
