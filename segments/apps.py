from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"

    def ready(self):
        from django_q.signals import post_spawn

        from . import checks  # noqa: F401
        from .deletion.watchdog import deletion_watchdog_on_worker_start

        post_spawn.connect(
            deletion_watchdog_on_worker_start, dispatch_uid="segments-deletion-watchdog"
        )
