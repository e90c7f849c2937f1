from django.urls import path

from profiles import views

app_name = "profiles"
urlpatterns = [
    path("", views.profile_list, name="list"),
    path("<int:pk>/", views.profile_detail, name="detail"),
    path("<int:pk>/events/", views.profile_events, name="events"),
]
