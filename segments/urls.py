from django.urls import path

from segments import archive, views
from segments.deletion import urls as deletion_urls
from segments.retention import urls as retention_urls

app_name = "segments"
urlpatterns = [
    path("", views.segment_list, name="list"),
    path("new/", views.segment_create, name="create"),
    path("builder/", views.segment_builder, name="builder"),
    path("builder/count/", views.segment_builder_count, name="builder_count"),
    path("<int:pk>/", views.segment_detail, name="detail"),
    path("<int:pk>/edit/", views.segment_edit, name="edit"),
    path("<int:pk>/delete/", views.segment_delete, name="delete"),
    path("<int:pk>/refresh/", views.segment_refresh, name="refresh"),
    path("<int:pk>/refresh/status/", views.segment_refresh_status, name="refresh_status"),
    path("<int:pk>/archive-instead/", archive.archive_instead, name="archive_instead"),
]
urlpatterns += deletion_urls.urlpatterns
urlpatterns += retention_urls.urlpatterns
