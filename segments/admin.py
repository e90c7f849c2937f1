from django import forms
from django.contrib import admin, messages
from django.forms.fields import InvalidJSONInput

from segments.builder import JSONRefused, rules_from_json
from segments.forms import segment_name_clean
from segments.models import (
    DeletionJob,
    DeletionRunner,
    ProfileExport,
    RetentionSchedule,
    Segment,
    SegmentMembership,
)
from segments.rules import RulesError, rules_validate
from segments.services import SegmentBusy, segment_delete, segment_request_refresh


class RulesJSONField(forms.JSONField):
    """Django's JSON field, reading as strictly as the segment form does
    (``rules_from_json``): NaN, 1e400, a 5000-digit number or deep nesting
    are refused with a message instead of failing the page."""

    def to_python(self, value):
        if isinstance(value, str) and value not in self.empty_values:
            try:
                return rules_from_json(value)
            except JSONRefused as refused:
                raise forms.ValidationError(str(refused)) from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        try:
            return rules_from_json(data)
        except JSONRefused:
            return InvalidJSONInput(data)


class SegmentAdminForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ("name", "description", "rules", "refresh_error", "created_by")
        field_classes = {"rules": RulesJSONField}

    def clean_name(self):
        segment = self.instance if self.instance.pk else None
        return segment_name_clean(self.cleaned_data["name"], segment=segment)

    def clean_rules(self):
        rules = self.cleaned_data["rules"]
        try:
            rules_validate(rules)
        except RulesError as error:
            raise forms.ValidationError(error.errors) from None
        return rules


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """The same rules check as the segment form; new rules request a refresh."""

    form = SegmentAdminForm
    list_display = ("name", "member_count", "last_refreshed_at", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("member_count", "last_refreshed_at", "refresh_requested_at", "created_at")
    raw_id_fields = ("created_by",)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "rules" in form.changed_data or not change:
            segment_request_refresh(segment=obj)
        if "rules" in form.changed_data and change:
            RetentionSchedule.pause_for_rule_edit(
                segment_id=obj.pk, username=request.user.get_username()
            )

    # Deleting a definition goes through the same service as the dashboard,
    # which refuses while a refresh or a deletion of its profiles runs.
    def has_delete_permission(self, request, obj=None):
        if obj is not None and (
            obj.deletion_jobs.filter(status__in=DeletionJob.ACTIVE_STATUSES).exists()
            or obj.deletion_jobs.unfinished().exists()
        ):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        try:
            segment_delete(segment=obj)
        except SegmentBusy as busy:
            self.message_user(request, str(busy), level=messages.ERROR)

    def delete_queryset(self, request, queryset):
        for segment in queryset:
            self.delete_model(request, segment)


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(admin.ModelAdmin):
    """Memberships are looked at here, never added or changed: only a refresh
    adds members, and that is what lets a deletion's confirmation name the
    membership its dialog showed (segment_membership_token)."""

    list_display = ("id", "segment", "profile", "joined_at")
    list_select_related = ("segment", "profile")
    raw_id_fields = ("segment", "profile")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RecordAdmin(admin.ModelAdmin):
    """An audit record: shown, never added, changed or deleted in admin."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DeletionRunnerInline(admin.TabularInline):
    """A job's parallel runners (DELETION_RUNNERS > 1): each one's range of
    the snapshot, how far it got and how many it set aside. Read-only."""

    model = DeletionRunner
    fields = (
        "number",
        "status",
        "low",
        "high",
        "cursor",
        "total",
        "handled",
        "set_aside",
        "batches",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "parallel runners"

    @admin.display(description="set aside")
    def set_aside(self, runner):
        return len(runner.deferred_profile_ids)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeletionJob)
class DeletionJobAdmin(RecordAdmin):
    """The audit record of deletions: read-only, whoever looks at it."""

    inlines = (DeletionRunnerInline,)

    list_display = (
        "id",
        "segment_name",
        "status",
        "created_by_username",
        "created_at",
        "started_by_schedule",
        "total",
        "deleted",
        "skipped",
        "finished_at",
    )
    list_filter = ("status", "started_by_schedule")
    search_fields = ("segment_name", "created_by_username")


@admin.register(ProfileExport)
class ProfileExportAdmin(RecordAdmin):
    """Who downloaded a segment's members as a CSV: read-only, like the
    deletion audit. It names the marketer and the segment, never a member."""

    list_display = (
        "created_at",
        "username",
        "segment_name",
        "expected_count",
        "rows_exported",
        "status",
        "finished_at",
    )
    list_filter = ("status",)
    search_fields = ("segment_name", "username")


@admin.register(RetentionSchedule)
class RetentionScheduleAdmin(RecordAdmin):
    """Retention schedules, read-only: they are created, paused, resumed and
    deleted on the segment's pages, which check the name typed and the access."""

    list_display = (
        "segment",
        "status",
        "frequency",
        "weekday",
        "time_of_day",
        "max_profiles",
        "owner_username",
        "next_run_at",
        "last_run_at",
    )
    list_select_related = ("segment",)
    list_filter = ("status", "frequency")
    search_fields = ("segment__name", "owner_username")
