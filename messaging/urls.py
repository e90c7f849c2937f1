from django.urls import path

from messaging import views

app_name = "messaging"
urlpatterns = [
    path("", views.campaign_list, name="campaign_list"),
    path("<int:pk>/", views.campaign_detail, name="campaign_detail"),
    path("<int:pk>/audience/add/", views.campaign_audience_add, name="audience_add"),
    path("<int:pk>/audience/remove/", views.campaign_audience_remove, name="audience_remove"),
    path("<int:pk>/audience/undo/", views.campaign_audience_undo, name="audience_undo"),
]
