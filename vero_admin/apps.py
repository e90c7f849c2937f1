from django.apps import AppConfig


class VeroAdminConfig(AppConfig):
    name = "vero_admin"
    verbose_name = "vero_admin"
