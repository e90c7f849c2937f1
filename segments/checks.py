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
