from django.contrib import admin

from segments.models import DeletionJob, Segment, SegmentMembership


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ("name", "member_count", "last_refreshed_at", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("member_count", "last_refreshed_at", "refresh_requested_at", "created_at")
    raw_id_fields = ("created_by",)


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
