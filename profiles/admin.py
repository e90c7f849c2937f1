import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.options import get_content_type_for_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, models, transaction
from django.forms.fields import InvalidJSONInput
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from profiles.api_input import InvalidInput, check_storable
from profiles.erasure import erased_repr, profile_erase, profiles_erase
from profiles.models import ApiKey, Event, Profile, SubscriptionPreference, Suppression
from profiles.services import api_key_create, api_key_revoke

ADMIN_ERASE_BATCH = 1000


def _refuse_constant(name):
    raise forms.ValidationError(f"{name} is not a number JSON can hold; use a number like 30.")


class StorableJSONField(forms.JSONField):
    """Django's JSON field, refusing what the API refuses (``check_storable``):
    NaN, Infinity, 1e400, a 5000-digit number, NUL, a lone surrogate, deep
    nesting. Django's own field lets them through and the save fails with
    a 500 (or the form fails to show itself again)."""

    def to_python(self, value):
        if not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            parsed = json.loads(value, parse_constant=_refuse_constant)
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.") from None
        except ValueError as error:  # JSONDecodeError, and over 4,300 digits
            raise forms.ValidationError(f"This is not valid JSON: {error}.") from None
        try:
            check_storable(parsed, "The value")
        except InvalidInput as refused:
            raise forms.ValidationError(str(refused)) from None
        return parsed

    def bound_data(self, data, initial):
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        try:
            return self.to_python(data)
        except forms.ValidationError:
            return InvalidJSONInput(data)


STORABLE_JSON = {models.JSONField: {"form_class": StorableJSONField}}


class LockedProfileChoiceField(forms.ModelChoiceField):
    """A profile chosen in an admin form, locked until the admin's transaction ends.

    Django admin validates and saves in one transaction. Locking the profile
    (``FOR NO KEY UPDATE``, which an erasure's ``FOR UPDATE`` conflicts
    with) while validating means either the erasure waits for the save and
    then erases what it wrote, or the form waits for the erasure and finds
    the profile gone: a form error, instead of a row saved for a profile
    that no longer exists (an IntegrityError at commit, a 500).
    """

    default_error_messages = {
        "invalid_choice": "This profile no longer exists; it may have just been erased."
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        queryset = self.queryset
        if connection.in_atomic_block:
            queryset = queryset.select_for_update(no_key=True)
        try:
            return queryset.get(**{self.to_field_name or "pk": value})
        except (ValueError, TypeError, queryset.model.DoesNotExist, ValidationError):
            raise ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice"
            ) from None


class LockedProfileMixin:
    """For the admin of a model that points at Profile (see LockedProfileChoiceField)."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Profile:
            kwargs.setdefault("form_class", LockedProfileChoiceField)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class SubscriptionPreferenceInline(admin.TabularInline):
    model = SubscriptionPreference
    extra = 0


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "user_id", "subscribed", "created_at")
    list_filter = ("subscribed",)
    search_fields = ("=user_id", "^email")
    show_full_result_count = False
    inlines = [SubscriptionPreferenceInline]
    readonly_fields = ("created_at", "updated_at")
    formfield_overrides = STORABLE_JSON

    def get_object(self, request, object_id, from_field=None):
        """On a save or a delete, the profile is locked until the admin's
        transaction ends.

        Django's save updates the row and INSERTs it when no row was updated:
        a save that waited for an erasure would bring the person back, old
        id, email, attributes and inline preferences. Locked first, the save
        either runs before the erasure (which then erases it too) or finds
        the profile gone, and Django answers that it does not exist.
        """
        if request.method != "POST" or not connection.in_atomic_block:
            return super().get_object(request, object_id, from_field)
        queryset = self.get_queryset(request).select_for_update(no_key=True, of=("self",))
        field = Profile._meta.pk if from_field is None else Profile._meta.get_field(from_field)
        try:
            return queryset.get(**{field.name: field.to_python(object_id)})
        except (Profile.DoesNotExist, ValidationError, ValueError):
            return None

    def save_model(self, request, obj, form, change):
        # Never an INSERT of a profile that is being edited (see get_object).
        obj.save(force_update=change)

    # Deleting here goes through erasure too: Django's own delete would keep
    # the person's email, IP address and user agent on the rows it unlinks.
    def delete_model(self, request, obj):
        profile_erase(profile=obj)

    def delete_queryset(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        for start in range(0, len(ids), ADMIN_ERASE_BATCH):
            with transaction.atomic():
                profiles_erase(profile_ids=ids[start : start + ADMIN_ERASE_BATCH])

    def log_deletions(self, request, queryset):
        """The log says which profile id was erased, never whose (Django
        would write ``str(profile)``, the email, and keep it)."""
        return LogEntry.objects.bulk_create(
            LogEntry(
                user_id=request.user.pk,
                content_type_id=get_content_type_for_model(obj).pk,
                object_id=str(obj.pk),
                object_repr=erased_repr(Profile),
                action_flag=DELETION,
            )
            for obj in queryset
        )

    def response_delete(self, request, obj_display, obj_id):
        # Django's "The profile “ada@example.com” was deleted" would carry the
        # email into the session's messages: name the id instead.
        return super().response_delete(request, f"#{obj_id}", obj_id)


@admin.register(Event)
class EventAdmin(LockedProfileMixin, admin.ModelAdmin):
    list_display = ("id", "name", "profile", "occurred_at")
    list_select_related = ("profile",)
    raw_id_fields = ("profile",)
    search_fields = ("=name",)
    show_full_result_count = False
    formfield_overrides = STORABLE_JSON


@admin.register(SubscriptionPreference)
class SubscriptionPreferenceAdmin(LockedProfileMixin, admin.ModelAdmin):
    list_display = ("id", "profile", "topic", "subscribed", "changed_at")
    list_select_related = ("profile",)
    list_filter = ("topic", "subscribed")
    raw_id_fields = ("profile",)
    show_full_result_count = False


class ApiKeyCreateForm(forms.ModelForm):
    # No choice made in advance: whoever creates a key says where it will live.
    scope = forms.ChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.RadioSelect,
        help_text=ApiKey._meta.get_field("scope").help_text,
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scope"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here and shown once; afterwards only their prefix is known."""

    list_display = ("name", "scope", "prefix", "created_at", "revoked_at", "is_active")
    list_filter = ("scope", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "=prefix")
    # The scope is chosen once: a track key embedded in a page must never
    # become full. Make a new key instead.
    readonly_fields = ("scope", "prefix", "created_at", "revoked_at")
    fields = ("name", "scope", "prefix", "created_at", "revoked_at")
    actions = ["revoke"]

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        return obj.is_active

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
            kwargs["fields"] = ["name", "scope"]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name", "scope"] if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        api_key, raw_key = api_key_create(
            name=form.cleaned_data["name"], scope=form.cleaned_data["scope"]
        )
        obj.pk = api_key.pk
        obj.__dict__.update(api_key.__dict__)
        request._api_key_text = raw_key  # shown once by response_add

    def response_add(self, request, obj, post_url_continue=None):
        return TemplateResponse(
            request,
            "admin/profiles/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "api_key": obj,
                "raw_key": request._api_key_text,
            },
        )

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
        messages.success(request, "The selected keys are revoked; requests with them get 401.")


class SuppressionFindForm(forms.Form):
    identifier = forms.CharField(
        label="Email or user id",
        max_length=1000,
        strip=False,
        help_text="Hashed here and compared with the list; not stored, logged or put in a link.",
    )

    def clean_identifier(self):
        value = self.cleaned_data["identifier"]
        if not value.strip():
            raise ValidationError("Type an email address or a user id.")
        return value


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """People kept from coming back after a deletion, by digest only.

    Lifting one is deleting it (one identifier at a time, or several with the
    action); Django's log records who lifted which, naming the digest, which
    is all this table has. The changelist's search takes a digest only: a
    search term travels in the URL (access logs, browser history, the
    ``_changelist_filters`` of every link), so an email or user id is looked
    up through *Find by email or user id*, a POST form that hashes it and
    redirects to the changelist filtered by the digests.
    """

    list_display = ("kind", "digest", "job_id", "created_at")
    list_filter = ("kind",)
    readonly_fields = ("kind", "digest", "job_id", "created_at")
    search_fields = ("=digest",)
    search_help_text = (
        "A SHA-256 digest. To look up an email or user id, use “Find by email or user id” "
        "(it keeps the address out of links and logs)."
    )
    show_full_result_count = False
    actions = ["delete_selected"]
    change_list_template = "admin/profiles/suppression/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(digest=term.lower()), False

    def get_urls(self):
        find = path(
            "find/",
            self.admin_site.admin_view(self.find_view),
            name="profiles_suppression_find",
        )
        return [find, *super().get_urls()]

    def find_view(self, request):
        """Hash an email or user id typed in a POST form; redirect to the
        changelist filtered by the digests (no clear value in any URL)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        form = SuppressionFindForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            value = form.cleaned_data["identifier"]
            digests = sorted(
                {
                    Suppression.digest_of(Suppression.Kind.USER_ID, value),
                    Suppression.digest_of(Suppression.Kind.EMAIL, value),
                }
            )
            if Suppression.objects.filter(digest__in=digests).exists():
                changelist = reverse("admin:profiles_suppression_changelist")
                return HttpResponseRedirect(f"{changelist}?digest__in={','.join(digests)}")
            form.add_error(
                "identifier", "Nobody with this email or user id is on the suppression list."
            )
        return TemplateResponse(
            request,
            "admin/profiles/suppression/find.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "form": form,
                "title": "Find a suppression by email or user id",
            },
        )

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            function, name, _ = actions["delete_selected"]
            actions["delete_selected"] = (
                function,
                name,
                "Lift the selected suppressions (let these people back in)",
            )
        return actions
