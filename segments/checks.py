from django.conf import settings
from django.core.checks import Error, register


@register()
def check_q_cluster_retry_exceeds_timeout(app_configs, **kwargs):
    """django-q2's ORM broker re-delivers a task `retry` seconds after handing
    it out. If that comes before `timeout` kills a slow task, two workers run
    the same task at once."""
    conf = getattr(settings, "Q_CLUSTER", {})
    timeout, retry = conf.get("timeout"), conf.get("retry")
    if timeout is None or retry is None or retry <= timeout:
        return [
            Error(
                f"Q_CLUSTER['retry'] ({retry}) must be set and larger than "
                f"Q_CLUSTER['timeout'] ({timeout}).",
                hint="Set Q_RETRY above Q_TIMEOUT.",
                id="segments.E001",
            )
        ]
    return []


@register()
def check_deletion_slice_fits_in_timeout(app_configs, **kwargs):
    """A deletion slice must end well before django-q2 kills the task."""
    timeout = getattr(settings, "Q_CLUSTER", {}).get("timeout") or 0
    slice_seconds = getattr(settings, "DELETION_SLICE_SECONDS", 0)
    if slice_seconds * 2 > timeout:
        return [
            Error(
                f"DELETION_SLICE_SECONDS ({slice_seconds}) must be at most half of "
                f"Q_CLUSTER['timeout'] ({timeout}).",
                id="segments.E002",
            )
        ]
    return []
