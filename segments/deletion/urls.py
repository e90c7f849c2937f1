from django.urls import path

from segments.deletion import export as export_views
from segments.deletion import history
from segments.deletion import impact as impact_views
from segments.deletion import views as deletion_views

urlpatterns = [
    path("<int:pk>/delete-profiles/", deletion_views.delete_profiles, name="delete_profiles"),
    path(
        "<int:pk>/deletions/<int:job_pk>/progress/",
        deletion_views.deletion_progress,
        name="deletion_progress",
    ),
    path(
        "<int:pk>/deletions/<int:job_pk>/cancel/",
        deletion_views.deletion_cancel,
        name="deletion_cancel",
    ),
    path(
        "<int:pk>/deletions/<int:job_pk>/resume/",
        deletion_views.deletion_resume,
        name="deletion_resume",
    ),
    path(
        "<int:pk>/deletions/<int:job_pk>/close/",
        deletion_views.deletion_close,
        name="deletion_close",
    ),
    path("deletions/", history.deletion_history_page, name="deletion_history"),
    path("<int:pk>/delete-profiles/export/", export_views.export_members, name="export_members"),
    path("<int:pk>/delete-profiles/impact/", impact_views.deletion_impact, name="deletion_impact"),
    path(
        "deletions/<int:job_pk>/receipt/",
        deletion_views.deletion_receipt,
        name="deletion_receipt",
    ),
    path(
        "deletions/<int:job_pk>/receipt.json",
        deletion_views.deletion_receipt_json,
        name="deletion_receipt_json",
    ),
]
