from django.contrib.auth import views as auth_views

from vero_admin.forms import LoginForm


class LoginView(auth_views.LoginView):
    """Django's login page, answering a throttled attempt with 429 and Retry-After."""

    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.lockout:
            response.status_code = 429
            response["Retry-After"] = str(form.lockout.retry_after_seconds)
        return response
