"""One way to show a moment on the dashboard: "29 Nov 2026, 14:05 UTC",
in the site's time zone, named, inside a ``<time>`` element."""

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

register = template.Library()

FORMAT = "j M Y, H:i T"


@register.filter
def when(value):
    """``{{ event.occurred_at|when }}``; an empty value shows as "—"."""
    if not value:
        return "—"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return format_html(
        '<time datetime="{}">{}</time>', value.isoformat(), date_format(value, FORMAT)
    )
