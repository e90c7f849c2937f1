from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.db.models import Q
from django.http import HttpResponseRedirect, HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.templatetags.static import static
from django.views.decorators.http import require_safe

from profiles.errors import ProfileNotFound
from segments.models import DeletionJob
from vero_admin.access import ACCESS_LABELS, user_access
from vero_admin.forms import LoginForm
from vero_admin.query import BadQuery


class LoginView(auth_views.LoginView):
    """Django's login page, answering a throttled attempt with 429 and Retry-After."""

    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        return _throttled(super().form_invalid(form), form)


def admin_login(request):
    """Django admin's login (its form is throttled too, vero_admin.urls),
    answering a throttled attempt with 429 and Retry-After like ours."""
    response = admin.site.login(request)
    form = (getattr(response, "context_data", None) or {}).get("form")
    return _throttled(response, form)


def _throttled(response, form):
    lockout = getattr(form, "lockout", None)
    if lockout:
        response.status_code = 429
        response["Retry-After"] = str(lockout.retry_after_seconds)
    return response


@require_safe
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links to. Temporary,
    so a new icon (a new hashed file name in production) is picked up."""
    return HttpResponseRedirect(static("favicon.svg"))


# Error pages. Each says what happened and where to go next, in the site's
# layout (400, 403, 404 extend base.html); 500 extends error_base.html, which
# needs no request, user or database, since those may be what failed.


def _error_template(request, name: str) -> str:
    """An htmx request swaps 4xx answers into its target (see base.html's
    htmx-config): give it the message alone, not a second page layout."""
    return f"{name}#message" if getattr(request, "htmx", False) else name


def bad_request(request, exception):
    """The 400 page; a ``BadQuery`` (a query-string value a page cannot
    read) says which, and links to the page without it."""
    context = {"reason": str(exception)} if isinstance(exception, BadQuery) else {}
    return render(request, _error_template(request, "400.html"), context, status=400)


def permission_denied(request, exception):
    return render(
        request,
        _error_template(request, "403.html"),
        {"access": ACCESS_LABELS[user_access(request.user)]},
        status=403,
    )


def page_not_found(request, exception):
    context = {"path": request.path}
    if isinstance(exception, ProfileNotFound):
        context["profile_id"] = exception.profile_id
        context["deletion_job"] = _deletion_job_of_profile(exception.profile_id)
    return render(request, _error_template(request, "404.html"), context, status=404)


def server_error(request=None):
    return HttpResponseServerError(loader.get_template("500.html").render())


def _deletion_job_of_profile(profile_id: int) -> DeletionJob | None:
    """The deletion job that erased this profile, if one did: the latest job
    whose snapshot (kept for the audit, rows outlive their profiles) holds the
    id and whose run reached it. The snapshot's primary key is
    (job, profile_id): PostgreSQL 18 answers this by a skip scan over the few
    jobs, not a scan of every snapshot row."""
    return (
        DeletionJob.objects.filter(snapshot__profile_id=profile_id)
        .filter(
            Q(status=DeletionJob.Status.COMPLETED)
            | Q(cursor__gte=profile_id)
            # A job run by parallel runners: the runner whose range holds it.
            | Q(runners__low__lte=profile_id, runners__cursor__gte=profile_id)
        )
        .exclude(deferred_profile_ids__contains=[profile_id])
        .order_by("-created_at", "-id")
        .first()
    )
