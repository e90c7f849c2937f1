from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group, User
from django.db.models import Exists, OuterRef

from vero_admin.access import (
    ACCESS_DESCRIPTIONS,
    ACCESS_LABELS,
    EDIT,
    EDITORS,
    FULL,
    GROUP_DESCRIPTIONS,
    NONE,
    VIEW,
    VIEWERS,
    user_access,
    user_access_set,
)
from vero_admin.models import LoginAttempt

# Users and groups are where admins hand out View (Viewers) or View and Edit
# (Editors) access: the user pages say so in those words, with one control.
admin.site.unregister(User)
admin.site.unregister(Group)

ACCESS_CHOICES = [
    (NONE, f"None: {ACCESS_DESCRIPTIONS[NONE]}"),
    (VIEW, f"View ({VIEWERS} group): {ACCESS_DESCRIPTIONS[VIEW]}"),
    (EDIT, f"View and Edit ({EDITORS} group): {ACCESS_DESCRIPTIONS[EDIT]}"),
]
ACCESS_HELP = (
    "Puts the user in the Viewers or the Editors group (or neither); "
    "other groups under Permissions are kept."
)


def _access_field():
    return forms.ChoiceField(
        label="Access to the dashboard",
        choices=ACCESS_CHOICES,
        initial=NONE,
        widget=forms.RadioSelect,
        help_text=ACCESS_HELP,
    )


class AccessFormMixin:
    """The one control for a user's access. A superuser has full access
    whatever the groups: shown, not editable."""

    def setup_access(self):
        field = self.fields.get("access")
        if field is None:  # a read-only view of the page
            return
        user = self.instance
        if user.pk and user.is_superuser:
            field.choices = [(FULL, "Full: a superuser can do everything, whatever the groups")]
            field.initial = FULL
            field.disabled = True
            field.help_text = "Untick Superuser status below (and save) to choose an access level."
        elif user.pk:
            field.initial = user_access(user)

    def clean_access(self):
        access = self.cleaned_data["access"]
        needed = {VIEW: VIEWERS, EDIT: EDITORS}.get(access)
        if needed and not Group.objects.filter(name=needed).exists():
            raise forms.ValidationError(
                f"The {needed} group is missing; run the migrations to create it."
            )
        return access


class VeroUserChangeForm(AccessFormMixin, UserChangeForm):
    access = _access_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_access()


class VeroUserCreationForm(AccessFormMixin, AdminUserCreationForm):
    access = _access_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_access()


class AccessFilter(admin.SimpleListFilter):
    title = "access"
    parameter_name = "access"

    def lookups(self, request, model_admin):
        return [(level, ACCESS_LABELS[level]) for level in (NONE, VIEW, EDIT, FULL)]

    def queryset(self, request, queryset):
        ordinary = queryset.filter(is_superuser=False)
        match self.value():
            case "none":
                return ordinary.filter(in_editors=False, in_viewers=False)
            case "view":
                return ordinary.filter(in_editors=False, in_viewers=True)
            case "edit":
                return ordinary.filter(in_editors=True)
            case "full":
                return queryset.filter(is_superuser=True)
        return queryset


def _in_group(name):
    return Exists(User.groups.through.objects.filter(user=OuterRef("pk"), group__name=name))


@admin.register(User)
class VeroUserAdmin(UserAdmin):
    form = VeroUserChangeForm
    add_form = VeroUserCreationForm
    list_display = ("username", "email", "access", "is_staff", "is_active", "last_login")
    list_filter = (AccessFilter, "is_staff", "is_superuser", "is_active", "groups")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Access to the dashboard", {"fields": ("access",)}),
        *UserAdmin.fieldsets[1:],
    )
    add_fieldsets = (
        *UserAdmin.add_fieldsets,
        ("Access to the dashboard", {"fields": ("access",)}),
    )
    # Dates are a record, not settings; Django's split date/time inputs also
    # have no labels a screen reader can tie to them (axe: critical).
    readonly_fields = ("last_login", "date_joined")
    # Groups are few: checkboxes in a labelled fieldset, not the two-pane
    # widget (whose search icons carry a prohibited aria-label, Django's own).
    filter_horizontal = ("user_permissions",)

    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        if db_field.name == "groups":
            kwargs["widget"] = forms.CheckboxSelectMultiple
        return super().formfield_for_manytomany(db_field, request=request, **kwargs)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(in_editors=_in_group(EDITORS), in_viewers=_in_group(VIEWERS))
        )

    @admin.display(description="Access")
    def access(self, user):
        """The list's column, and the page's read-only line for staff who may only view users."""
        if user.is_superuser:
            return ACCESS_LABELS[FULL]
        if getattr(user, "in_editors", None) is None:
            return ACCESS_LABELS[user_access(user)]
        return ACCESS_LABELS[EDIT if user.in_editors else VIEW if user.in_viewers else NONE]

    def save_related(self, request, form, formsets, change):
        # After the groups widget is saved, so the access control has the last word.
        super().save_related(request, form, formsets, change)
        if "access" in form.changed_data:
            user_access_set(user=form.instance, access=form.cleaned_data["access"])


@admin.register(Group)
class VeroGroupAdmin(GroupAdmin):
    list_display = ("name", "description")
    fields = ("name", "description", "permissions")
    readonly_fields = ("description",)

    @admin.display(description="What it gives")
    def description(self, group):
        return GROUP_DESCRIPTIONS.get(
            group.name,
            "A group of your own: it gives the permissions listed on its page. Dashboard access "
            "comes from the Viewers and Editors groups.",
        )

    def get_readonly_fields(self, request, obj=None):
        # The user pages find the two access groups by name.
        if obj is not None and obj.name in GROUP_DESCRIPTIONS:
            return ("name", *self.readonly_fields)
        return self.readonly_fields


@admin.register(LoginAttempt)
class LoginAttemptAdmin(admin.ModelAdmin):
    """Recent failed logins; deleting a username's rows lifts its lockout at once."""

    list_display = ("username", "ip_address", "attempted_at")
    search_fields = ("=username", "=ip_address")
    readonly_fields = ("username", "ip_address", "attempted_at")

    def has_add_permission(self, request):
        return False
