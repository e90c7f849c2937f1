from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from vero_admin import login_throttle


class ThrottledLoginMixin:
    """Refuse a login attempt, before its password is checked, once its
    username and address, or its address alone, have failed too often
    (``vero_admin.login_throttle``).

    In the form, so the dashboard's login and Django admin's share it.
    ``lockout`` is set when the attempt was refused, for the view's 429.
    """

    lockout = None

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip_address = login_throttle.client_address(self.request) if self.request else None
        self.lockout = login_throttle.login_attempt_begin(username=username, ip_address=ip_address)
        if self.lockout:
            raise ValidationError(self.lockout.message, code="throttled")
        cleaned_data = super().clean()
        if self.get_user() is not None:
            login_throttle.login_succeeded(username=username, ip_address=ip_address)
        return cleaned_data


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
