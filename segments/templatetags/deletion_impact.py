"""The deletion dialog's impact block, computed inline for the full-page
dialog (no JavaScript); the htmx dialog loads it after opening instead."""

from django import template

from segments.deletion.impact import deletion_impact_figures

register = template.Library()


@register.simple_tag
def deletion_impact(segment):
    return deletion_impact_figures(segment=segment)
