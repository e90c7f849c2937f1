from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from profiles import api_urls
from vero_admin.forms import AdminLoginForm
from vero_admin.views import LoginView, admin_login, favicon

admin.site.site_header = "vero_admin"
admin.site.site_title = "vero_admin"
admin.site.login_form = AdminLoginForm  # throttled like the dashboard's login

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="segments:list"), name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Before admin's own login/ (same view, same form), for the 429.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("segments/", include("segments.urls")),
    path("profiles/", include("profiles.urls")),
    path("campaigns/", include("messaging.urls")),
    path("api/v2/", include(api_urls.vero)),
    path("v1/", include(api_urls.segment)),
]

handler400 = "vero_admin.views.bad_request"
handler403 = "vero_admin.views.permission_denied"
handler404 = "vero_admin.views.page_not_found"
handler500 = "vero_admin.views.server_error"
