from django.urls import path

from segments import deletion_urls, views

app_name = "segments"
urlpatterns = [
    path("", views.segment_list, name="list"),
    path("<int:pk>/", views.segment_detail, name="detail"),
]
urlpatterns += deletion_urls.urlpatterns
