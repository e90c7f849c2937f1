"""The ingestion API: Vero's REST API v2 under /api/v2/, Segment's under /v1/.

Views are thin: :func:`api_endpoint` reads and checks the request (method,
size, JSON, API key and its scope) and turns refusals into JSON errors; each
view parses its body with ``profiles.api_input`` and calls one service in
``profiles.ingestion``.

Two kinds of call, two scopes of key (``ApiKey.Scope``). Identify and track
only add data, and are what a website or app sends, with a key every visitor
can read: a ``track`` key may make them. Everything else (edit, tags,
reidentify, unsubscribe, resubscribe, delete) changes or removes what is
there: it takes a ``full`` key, and is refused when a browser sends it (an
``Origin`` header of another site). We send no CORS headers, so a page can
reach the API only with a "simple" request (``text/plain`` POST), which is
how analytics.js delivers tracking; the Origin check keeps those simple
requests away from the calls that delete or edit.
"""

import base64
import binascii
import logging
import zlib
from functools import wraps

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from profiles import ingestion
from profiles.api_input import (
    KEY_FIELDS,
    SEGMENT_KEY_FIELD,
    InvalidInput,
    check_storable,
    parse_delete,
    parse_edit,
    parse_event,
    parse_identify,
    parse_identity_only,
    parse_json_object,
    parse_reidentify,
    parse_segment_batch,
    parse_segment_message,
    parse_tags,
)
from profiles.models import ApiKey
from profiles.selectors import api_key_authenticate
from profiles.suppression import Suppressed

logger = logging.getLogger(__name__)
TRACK, FULL = ApiKey.Scope.TRACK, ApiKey.Scope.FULL

# Segment's own API takes batches up to 500 KB; a little headroom on top.
MAX_BODY_BYTES = 512 * 1024


class PayloadTooLarge(Exception):
    pass


def error_response(status: int, code: str, message: str, **extra) -> JsonResponse:
    # "code" and "message" are what Segment's client libraries read.
    return JsonResponse(
        {"status": status, "code": code, "message": message, **extra}, status=status
    )


def _success() -> JsonResponse:
    return JsonResponse({"status": 200, "message": "Success."})


def _read_body(request: HttpRequest) -> bytes:
    """The body, at most MAX_BODY_BYTES of it (after gzip, if gzipped)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise PayloadTooLarge
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; send gzip or none.")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = decompressor.decompress(raw, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise InvalidInput("The request body is not valid gzip.") from None
    if len(body) > MAX_BODY_BYTES or decompressor.unconsumed_tail:
        raise PayloadTooLarge
    return body


def _body(request: HttpRequest) -> dict:
    raw = _read_body(request)
    if request.method == "DELETE" and not raw.strip():
        # Many HTTP clients send no body with DELETE: take the query instead.
        query = {key: request.GET[key] for key in request.GET if key not in KEY_FIELDS}
        check_storable(query, "query")
        return query
    return parse_json_object(raw)


def _take_key(request: HttpRequest, body: dict) -> str:
    """The API key from the query, the body (removed from it) or Basic auth."""
    found = ""
    for name in (*KEY_FIELDS, SEGMENT_KEY_FIELD):
        value = body.pop(name, None)
        if isinstance(value, str) and value and not found:
            found = value
        found = found or request.GET.get(name, "")
    if found:
        return found
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[0]
    if scheme.lower() == "bearer":
        return credentials.strip()
    return ""


def _scope_refusal(request: HttpRequest, api_key: ApiKey) -> JsonResponse | None:
    """403 for a call that needs a full key, made with a track key or from a
    web page of another site; None when it may go on."""
    if not api_key.is_full:
        return error_response(
            403,
            "forbidden",
            f"This API key is for tracking only (identify, track, batch); {request.path} "
            "needs a key with full access, which belongs on a server, never in a web page.",
        )
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.get_host()}":
        return error_response(
            403,
            "forbidden",
            f"{request.path} is not accepted from a web page (this request came from "
            f"{origin}); call it from your server. Web pages may only identify and track, "
            "with a track-only key.",
        )
    return None


def api_endpoint(*methods: str, authenticated: bool = True, scope: str = FULL):
    """Check method, size, JSON, key and scope, call ``view(request, body,
    api_key)``, and answer every refusal, and any failure, with a JSON error.

    ``scope`` is what the call needs: FULL unless it only adds data.
    """

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest):
            if request.method not in methods:
                response = error_response(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                body = _body(request) if request.method not in ("GET", "HEAD") else {}
                api_key = None
                if authenticated:
                    raw_key = _take_key(request, body)
                    if not raw_key:
                        return error_response(
                            401,
                            "unauthorized",
                            "No API key: send it as tracking_api_key (or auth_token) in the "
                            "body or query, or as the HTTP Basic auth user name.",
                        )
                    api_key = api_key_authenticate(raw_key=raw_key)
                    if api_key is None:
                        return error_response(401, "unauthorized", "Invalid or revoked API key.")
                    if scope == FULL and (refusal := _scope_refusal(request, api_key)):
                        return refusal
                return view(request, body, api_key)
            except Suppressed:
                # A suppressed person: accepted and discarded, as promised.
                return _success()
            except PayloadTooLarge:
                return error_response(
                    413,
                    "payload_too_large",
                    f"The request body is larger than {MAX_BODY_BYTES // 1024} KB.",
                )
            except InvalidInput as exc:
                extra = {} if exc.item is None else {"item": exc.item}
                return error_response(400, "invalid_request", str(exc), **extra)
            except ingestion.ProfileNotFound as exc:
                return error_response(404, "not_found", str(exc))
            except ingestion.UserIdTaken as exc:
                return error_response(409, "conflict", str(exc))
            except ingestion.IngestionBusy:
                response = error_response(
                    503, "busy", "The profile is locked by other work; retry in a moment."
                )
                response["Retry-After"] = "1"
                return response
            except Exception:
                # Clients read JSON (Segment's retry the batch on any 5xx), and
                # the log names the path only: the query may carry a key.
                logger.exception("API error on %s %s", request.method, request.path)
                return error_response(
                    500, "server_error", "Something went wrong on our side; retry later."
                )

        return wrapper

    return decorator


# --- Vero REST API v2 -----------------------------------------------------------


# HEAD too: uptime monitors often check with it.
@api_endpoint("GET", "HEAD", authenticated=False)
def heartbeat(request, body, api_key):
    return _success()


@api_endpoint("POST", scope=TRACK)
def users_track(request, body, api_key):
    # A track key (shown to anyone by a web page) cannot redirect a known
    # person's emails: it sets an email only where the profile has none.
    ingestion.profile_identify(call=parse_identify(body), may_replace_email=api_key.scope == FULL)
    return _success()


@api_endpoint("PUT")
def users_edit(request, body, api_key):
    identity, changes = parse_edit(body)
    ingestion.profile_edit(identity=identity, changes=changes)
    return _success()


@api_endpoint("PUT")
def users_tags_edit(request, body, api_key):
    ingestion.profile_tags_edit(change=parse_tags(body))
    return _success()


@api_endpoint("PUT")
def users_reidentify(request, body, api_key):
    user_id, new_user_id = parse_reidentify(body)
    ingestion.profile_reidentify(user_id=user_id, new_user_id=new_user_id)
    return _success()


@api_endpoint("POST")
def users_unsubscribe(request, body, api_key):
    ingestion.profile_unsubscribe(identity=parse_identity_only(body))
    return _success()


@api_endpoint("POST")
def users_resubscribe(request, body, api_key):
    ingestion.profile_resubscribe(identity=parse_identity_only(body))
    return _success()


@api_endpoint("POST", "DELETE")
def users_delete(request, body, api_key):
    ingestion.profile_delete(user_id=parse_delete(body))
    return _success()


@api_endpoint("POST", scope=TRACK)
def events_track(request, body, api_key):
    ingestion.event_track(call=parse_event(body))
    return _success()


# --- Segment's HTTP tracking API ------------------------------------------------


def _segment_response(result: ingestion.BatchResult) -> JsonResponse:
    return JsonResponse(
        {
            "success": True,
            "applied": result.applied,
            "duplicates": result.duplicates,
            "ignored": result.ignored,
            "suppressed": result.suppressed,
        }
    )


@api_endpoint("POST", scope=TRACK)
def segment_batch(request, body, api_key):
    calls = parse_segment_batch(body)
    return _segment_response(ingestion.segment_batch_apply(api_key=api_key, calls=calls))


def _segment_single(call_type: str):
    """The view of ``/v1/<call_type>``: one message of that type."""

    @api_endpoint("POST", scope=TRACK)
    def view(request, body, api_key):
        call = parse_segment_message(body, call_type=call_type)
        return _segment_response(ingestion.segment_batch_apply(api_key=api_key, calls=[call]))

    view.__name__ = view.__qualname__ = f"segment_{call_type}"
    return view


segment_identify = _segment_single("identify")
segment_track = _segment_single("track")
# Accepted and not stored, like these types in a batch.
segment_page = _segment_single("page")
segment_screen = _segment_single("screen")
segment_group = _segment_single("group")
segment_alias = _segment_single("alias")


@csrf_exempt
def not_found(request, path=""):
    return error_response(404, "not_found", f"No API endpoint at {request.path}.")
