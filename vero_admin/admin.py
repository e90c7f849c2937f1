from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User

from vero_admin.models import LoginAttempt

# Users and groups are where admins hand out View (Viewers) or Edit (Editors)
# access; these tweaks keep their pages usable with many users.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class VeroUserAdmin(UserAdmin):
    list_display = ("username", "email", "is_staff", "is_active", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")


@admin.register(Group)
class VeroGroupAdmin(GroupAdmin):
    pass


@admin.register(LoginAttempt)
class LoginAttemptAdmin(admin.ModelAdmin):
    """Recent failed logins; deleting a username's rows lifts its lockout at once."""

    list_display = ("username", "ip_address", "attempted_at")
    search_fields = ("=username", "=ip_address")
    readonly_fields = ("username", "ip_address", "attempted_at")

    def has_add_permission(self, request):
        return False
