"""Suppressed people: identifiers the ingestion API accepts and discards.

A segment deletion confirmed with "stop them from coming back" lists the
SHA-256 digests of its people's user ids and emails (``Suppression``). Every
identify or track call looks its identities up here in one indexed query
per request or Segment batch (``digest = ANY(...)`` on the unique
``(digest, kind)`` index); a call for a listed user id or email is answered
with success and writes nothing.
"""

from collections.abc import Iterable

from django.db import connection

from profiles.api_input import Identity
from profiles.models import Suppression

_TABLE = connection.ops.quote_name(Suppression._meta.db_table)


class Suppressed(Exception):
    """The call is for a suppressed person: answer success, write nothing."""


class SuppressedMeanwhile(Exception):
    """A profile this transaction created belongs to a person suppressed
    while it ran (their deletion batch committed as we waited for their row):
    the transaction is run again, and the call is then discarded."""


def identity_digests(identity: Identity) -> list[tuple[str, str]]:
    digests = []
    if identity.user_id is not None:
        digests.append(
            (
                Suppression.Kind.USER_ID,
                Suppression.digest_of(Suppression.Kind.USER_ID, identity.user_id),
            )
        )
    if identity.email:
        digests.append(
            (Suppression.Kind.EMAIL, Suppression.digest_of(Suppression.Kind.EMAIL, identity.email))
        )
    return digests


def suppressed_identities(cursor, identities: Iterable[Identity]) -> set[Identity]:
    """Which of these identities are suppressed (by user id or by email): one query."""
    wanted = {identity: identity_digests(identity) for identity in set(identities)}
    digests = sorted({digest for pairs in wanted.values() for _, digest in pairs})
    if not digests:
        return set()
    cursor.execute(
        f"SELECT kind, digest FROM {_TABLE} WHERE digest = ANY(%s)",  # noqa: S608
        [digests],
    )
    listed = {(kind, digest) for kind, digest in cursor.fetchall()}
    if not listed:
        return set()
    return {identity for identity, pairs in wanted.items() if listed.intersection(pairs)}
