from django.conf import settings
from django.http import Http404
from django.urls import Resolver404, get_resolver
from django.utils.cache import patch_cache_control, patch_vary_headers

from vero_admin.query import BadQuery, query_has_nul

# Everything the dashboard loads comes from our own origin: htmx and the
# stylesheet are static files served by whitenoise, and there is no inline
# script or style (tests/vero_admin/test_url_security.py checks every page).
# Django admin needs inline styles: 'unsafe-inline' for styles on its pages only.
_DIRECTIVES = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "object-src 'none'",
]
CONTENT_SECURITY_POLICY = "; ".join(_DIRECTIVES)
ADMIN_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", CONTENT_SECURITY_POLICY)
        self.admin_policy = getattr(
            settings, "ADMIN_CONTENT_SECURITY_POLICY", ADMIN_CONTENT_SECURITY_POLICY
        )

    def __call__(self, request):
        response = self.get_response(request)
        admin = request.path_info.startswith("/admin/")
        response.headers.setdefault(
            "Content-Security-Policy", self.admin_policy if admin else self.policy
        )
        return response


class PrivatePagesMiddleware:
    """Every answer to a logged-in user is ``Cache-Control: private,
    no-store``: the dashboard's pages show people (profiles, members,
    recipients, events, exports, receipts), and no proxy or browser cache
    should keep a copy. Each also varies on the htmx headers, since a page
    answers an htmx request at the same URL with a partial (the members
    table, the deletions table, a dialog, an error message)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
            patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response


class NotFoundPageMiddleware:
    """Answer a missing page with the site's 404 page even when DEBUG is on.

    The demo (``make run``: ``serve`` starts ``runserver``) runs with DEBUG
    on, and there Django answers an Http404 with its technical page, which
    lists every URL pattern of the site: no help to a marketer who followed
    an old link (a deleted profile's page says nothing about the deletion),
    and a map of the site for anyone. With DEBUG off Django already calls
    ``handler404``; this middleware makes DEBUG do the same for both kinds of
    404, so what the demo shows is what production shows:

    - a view that raises Http404 (``process_exception``, before Django's own
      handling turns it into the technical page);
    - a path no pattern matches: resolution fails before any view, so there
      is no exception to catch here, but ``request.resolver_match`` stays
      None; the technical page is replaced by ours.

    It sits last in MIDDLEWARE, inside CommonMiddleware, which still sees the
    404 and redirects ``/segments`` to ``/segments/`` (APPEND_SLASH).
    Tracebacks of 500s are left to DEBUG: they are what a developer needs.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.DEBUG and response.status_code == 404 and request.resolver_match is None:
            return self._page_not_found(request, Resolver404({"path": request.path_info}))
        return response

    def process_exception(self, request, exception):
        if settings.DEBUG and isinstance(exception, Http404):
            return self._page_not_found(request, exception)
        return None

    def _page_not_found(self, request, exception):
        callback = get_resolver(getattr(request, "urlconf", None)).resolve_error_handler(404)
        return callback(request, exception)


class BadQueryMiddleware:
    """Answer a query string a page cannot read with the 400 page and its reason.

    - A view that raises ``BadQuery`` (``vero_admin.query``) gets the 400
      page with the reason, with DEBUG on too (Django would show its
      technical page there).
    - In Django admin, a NUL character anywhere in the query string
      (``?id__exact=a%00b``) is refused before any view runs: PostgreSQL
      cannot compare text with it, and admin's filters pass it on. The
      dashboard's pages check each parameter they read themselves (search
      boxes say so beside the box), and the ingestion API answers its own
      errors, as JSON.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith("/admin/") and query_has_nul(request.GET):
            return self._bad_request(
                request,
                BadQuery(
                    "The address contains a character that is not valid text (a NUL "
                    "character, often from pasting). Remove it and try again."
                ),
            )
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, BadQuery):
            return self._bad_request(request, exception)
        return None

    def _bad_request(self, request, exception):
        callback = get_resolver(getattr(request, "urlconf", None)).resolve_error_handler(400)
        return callback(request, exception)
