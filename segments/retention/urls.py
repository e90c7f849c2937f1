from django.urls import path

from segments.retention import views

urlpatterns = [
    path("<int:pk>/retention/", views.retention_detail, name="retention"),
    path("<int:pk>/retention/new/", views.retention_create, name="retention_create"),
    path("<int:pk>/retention/pause/", views.retention_pause, name="retention_pause"),
    path("<int:pk>/retention/resume/", views.retention_resume, name="retention_resume"),
    path("<int:pk>/retention/delete/", views.retention_delete, name="retention_delete"),
]
