from django import forms
from django.contrib import admin

from segments.models import DeletionJob, Segment, SegmentMembership
from segments.rules import RulesError, rules_validate
from segments.services import segment_request_refresh


class SegmentAdminForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ("name", "description", "rules", "refresh_error", "created_by")

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


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(admin.ModelAdmin):
    list_display = ("id", "segment", "profile", "joined_at")
    list_select_related = ("segment", "profile")
    raw_id_fields = ("segment", "profile")
    show_full_result_count = False


@admin.register(DeletionJob)
class DeletionJobAdmin(admin.ModelAdmin):
    """The audit record of deletions: read-only, whoever looks at it."""

    list_display = (
        "id",
        "segment_name",
        "status",
        "created_by_username",
        "created_at",
        "total",
        "deleted",
        "skipped",
        "finished_at",
    )
    list_filter = ("status",)
    search_fields = ("segment_name", "created_by_username")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
