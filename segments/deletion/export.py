"""Export before deleting: the members the deletion dialog shows, as a CSV.

The dialog carries the membership stamp it was drawn from
(``segment_membership_token``). Members are only ever added by a refresh,
and a refresh rewrites the membership and the segment's stamp in one
transaction; so the file holds exactly the people behind the stamp when the
stamp and the membership are read in one snapshot. The export runs in one
``REPEATABLE READ, READ ONLY`` transaction: it reads the stamp (refusing with
409 when the segment was refreshed since) and opens one server-side cursor
over the members; once the download has begun, it reads the union of the
members' attribute keys (the header) and fetches the cursor ``BATCH_SIZE``
rows at a time while the response streams. The web process
holds one batch, never the segment; the database keeps the snapshot open for
as long as the download lasts (a slow client keeps it open longer, which
delays vacuum but blocks no write, no refresh and no deletion).

Attribute keys are data: they travel as values (Python dict keys, CSV
cells), never as SQL identifiers or template lookups. Every cell that a
spreadsheet would read as a formula (starting with = + - @, a tab or a
carriage return) gets a leading apostrophe.

The file is a copy of personal data that leaves the system on purpose; the
audit row (``ProfileExport``) names who downloaded which segment and when,
with no member in it, and nothing here logs a row or hands one to a task.
"""

import csv
import datetime
import io
import json
import logging

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from profiles.models import Profile
from segments.deletion.selectors import segment_membership_token, user_can_delete_profiles
from segments.models import ProfileExport, Segment, SegmentMembership

logger = logging.getLogger(__name__)

# Rows fetched from the server-side cursor, and written as one chunk.
BATCH_SIZE = 2000
BUILTIN_COLUMNS = ("email", "user id", "subscription status")
# What spreadsheets take for the start of a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NEVER_REFRESHED = "never-refreshed"
VIEW_PROFILE = "profiles.view_profile"


class StaleMembership(Exception):
    """The segment was refreshed (or deleted) after the dialog was drawn."""


class ExportForm(forms.Form):
    """The two facts the deletion dialog carries about what it showed."""

    expected_count = forms.IntegerField(min_value=0, max_value=2**31 - 1)
    membership_token = forms.CharField(max_length=64)

    def clean_membership_token(self):
        token = self.cleaned_data["membership_token"]
        if token != NEVER_REFRESHED:
            try:
                datetime.datetime.fromisoformat(token)
            except ValueError:
                raise forms.ValidationError("not a membership stamp") from None
        return token


# The view ----------------------------------------------------------------------


@require_POST
@login_required
def export_members(request: HttpRequest, pk: int) -> HttpResponse:
    """POST (from the deletion dialog): the members it showed, as a CSV download."""
    # The file lists the members: seeing them needs profile access, as on
    # the segment's page, even for someone who may delete them.
    if not (user_can_delete_profiles(request.user) and request.user.has_perm(VIEW_PROFILE)):
        raise PermissionDenied
    segment = get_object_or_404(Segment, pk=pk)
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _refused(
            request,
            segment,
            "The dialog did not say which profiles it showed. Open it again and download "
            "from there. Nothing was downloaded.",
            status=400,
        )
    token = form.cleaned_data["membership_token"]
    try:
        stream = profile_export_open(
            segment=segment,
            user=request.user,
            membership_token=token,
            expected_count=form.cleaned_data["expected_count"],
        )
    except StaleMembership:
        return _refused(
            request,
            segment,
            f"“{segment.name}” was refreshed after the dialog opened, so the people in it may "
            "have changed. Nothing was downloaded. Open the dialog again to see who is in it "
            "now, and download from there.",
            status=409,
        )
    filename = f"{slugify(segment.name) or 'segment'}-profiles-{timezone.now():%Y-%m-%d}.csv"
    response = StreamingHttpResponse(stream, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _refused(request, segment, message, *, status):
    context = {"segment": segment, "message": message}
    return render(request, "segments/export_refused.html", context, status=status)


# The export --------------------------------------------------------------------


def profile_export_open(*, segment: Segment, user, membership_token: str, expected_count: int):
    """Record the download and open the snapshot it streams from.

    Raises StaleMembership when the segment's stamp is no longer
    ``membership_token``: before anything is recorded when the page's segment
    already says so, or with the record marked refused when a refresh
    committed between that check and the snapshot. The audit row is committed
    before the snapshot opens, so it survives whatever happens to the download.
    """
    if segment_membership_token(segment) != membership_token:
        raise StaleMembership
    audit = ProfileExport.objects.create(
        segment=segment,
        segment_name=segment.name,
        user=user,
        username=user.get_username(),
        membership_token=membership_token,
        expected_count=expected_count,
    )
    stream = MemberCsvStream(segment_id=segment.pk, audit=audit)
    try:
        stream.open(membership_token)
    except StaleMembership:
        # A refresh committed between the first check and the snapshot.
        ProfileExport.objects.filter(pk=audit.pk).update(
            status=ProfileExport.Status.REFUSED, rows_exported=0, finished_at=timezone.now()
        )
        raise
    return stream


_KEYS_SQL = """
SELECT coalesce(array_agg(key ORDER BY key), '{{}}') FROM (
    SELECT DISTINCT jsonb_object_keys(p.properties) AS key
    FROM {membership} m JOIN {profile} p ON p.id = m.profile_id
    WHERE m.segment_id = %s AND jsonb_typeof(p.properties) = 'object'
) keys
"""

_ROWS_SQL = """
SELECT p.email, p.user_id, p.subscribed, p.properties
FROM {membership} m JOIN {profile} p ON p.id = m.profile_id
WHERE m.segment_id = %s
ORDER BY m.profile_id
"""


def _sql(template: str) -> str:
    return template.format(
        membership=SegmentMembership._meta.db_table, profile=Profile._meta.db_table
    )


class MemberCsvStream:
    """The CSV, chunk by chunk, from one server-side cursor in one snapshot.

    An iterator with ``close()``: Django's StreamingHttpResponse calls it when
    the response is closed (the download ended, or the client went away), so
    the transaction ends and the audit row gets its outcome even when the
    iteration never finished or never began.
    """

    def __init__(self, *, segment_id: int, audit: ProfileExport):
        self.segment_id = segment_id
        self.audit = audit
        self.rows = 0
        self.keys: list[str] = []
        self._atomic = None
        self._cursor = None
        self._bom_sent = False
        self._header_sent = False
        self._finished = False
        self._ended = False

    def open(self, membership_token: str) -> None:
        outermost = not connection.in_atomic_block
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        try:
            with connection.cursor() as cursor:
                if outermost:
                    # One snapshot for the stamp, the rows and the attribute
                    # names read after them. (Inside an outer transaction, a
                    # test's, the caller's level holds.)
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cursor.execute(
                    f"SELECT last_refreshed_at FROM {Segment._meta.db_table} WHERE id = %s",  # noqa: S608
                    [self.segment_id],
                )
                row = cursor.fetchone()
                if (
                    row is None
                    or segment_membership_token(Segment(last_refreshed_at=row[0]))
                    != membership_token
                ):
                    raise StaleMembership
            self._cursor = connection.chunked_cursor()
            self._cursor.execute(_sql(_ROWS_SQL), [self.segment_id])
        except BaseException:
            self._end(failed=True)
            raise

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self._finished or self._ended:
            raise StopIteration
        if not self._bom_sent:
            # First, at once, the byte order mark (so that Excel reads the file
            # as UTF-8): the browser starts the download while the attribute
            # names are gathered, which takes seconds at a million members.
            self._bom_sent = True
            return "\ufeff".encode()
        try:
            if not self._header_sent:
                with connection.cursor() as cursor:
                    cursor.execute(_sql(_KEYS_SQL), [self.segment_id])
                    self.keys = list(cursor.fetchone()[0])
            rows = self._cursor.fetchmany(BATCH_SIZE)
        except BaseException:
            self._end(failed=True)
            raise
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if not self._header_sent:
            writer.writerow(_safe(name) for name in (*BUILTIN_COLUMNS, *self.keys))
            self._header_sent = True
        for email, user_id, subscribed, properties in rows:
            writer.writerow(self._cells(email, user_id, subscribed, properties))
        self.rows += len(rows)
        if len(rows) < BATCH_SIZE:
            self._finished = True
            self._end(failed=False)
        chunk = buffer.getvalue()
        if not chunk:
            raise StopIteration
        return chunk.encode()

    def _cells(self, email, user_id, subscribed, properties):
        if isinstance(properties, str):
            properties = json.loads(properties)
        if not isinstance(properties, dict):
            properties = {}
        values = [_attribute_text(properties.get(key)) for key in self.keys]
        status = "subscribed" if subscribed else "unsubscribed"
        return [_safe(cell) for cell in (email or "", user_id or "", status, *values)]

    def close(self) -> None:
        self._end(failed=not self._finished)

    def _end(self, *, failed: bool) -> None:
        """Close the cursor and the snapshot, and record how the download ended."""
        if self._ended:
            return
        self._ended = True
        try:
            if self._cursor is not None:
                self._cursor.close()
        except DatabaseError:
            pass
        finally:
            if self._atomic is not None:
                # Read only: rolling back loses nothing and ends a broken one too.
                self._atomic.__exit__(_Done, _Done(), None)
        status = ProfileExport.Status.INTERRUPTED if failed else ProfileExport.Status.COMPLETED
        try:
            ProfileExport.objects.filter(
                pk=self.audit.pk, status=ProfileExport.Status.STARTED
            ).update(status=status, rows_exported=self.rows, finished_at=timezone.now())
        except DatabaseError:
            # The row stays "started": the download is on record either way.
            logger.warning("Could not record the end of profile export %s.", self.audit.pk)


class _Done(Exception):
    """Passed to the snapshot's atomic block so that it rolls back."""


def _attribute_text(value) -> str:
    """An attribute as a spreadsheet cell: text as it is, anything else as
    JSON (30, 2.5, true, ["a"]), and nothing for a missing or null one."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _safe(cell: str) -> str:
    """Keep a spreadsheet from reading the cell as a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell
