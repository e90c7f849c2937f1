from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ProfilesConfig(AppConfig):
    name = "profiles"

    def ready(self):
        from profiles import api_logs
        from profiles.timestamps import register_nearest_loaders

        # A stored time past Python's range must not take pages down.
        connection_created.connect(register_nearest_loaders, dispatch_uid="profiles.timestamps")
        # An API key sent in a URL must not reach the access log.
        api_logs.install()
