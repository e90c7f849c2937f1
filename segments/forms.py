import json

from django import forms

from segments.models import Segment
from segments.rules import RulesError, rules_validate

EXAMPLE_RULES = {
    "match": "all",
    "conditions": [
        {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
        {"type": "event", "event": "purchase", "operator": "not_done", "within_days": 30},
    ],
}


class RulesField(forms.JSONField):
    """JSON in a textarea, shown indented so people can read what they edit."""

    widget = forms.Textarea

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    rules = RulesField(
        initial=EXAMPLE_RULES,
        error_messages={
            "invalid": "This is not valid JSON: check the quotes, commas and brackets."
        },
    )

    def __init__(self, *args, segment: Segment | None = None, **kwargs):
        self.segment = segment
        if segment is not None:
            kwargs.setdefault(
                "initial",
                {"name": segment.name, "description": segment.description, "rules": segment.rules},
            )
        super().__init__(*args, **kwargs)
        self.fields["rules"].widget.attrs.update(
            {"rows": 18, "spellcheck": "false", "aria-describedby": "rules-help"}
        )

    def full_clean(self):
        """Tie each error list (rendered with id ``<field id>_errors``) to its
        field, so a screen reader reads the error with the field."""
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                described = f"{attrs.get('aria-describedby', '')} {self[name].auto_id}_errors"
                attrs["aria-describedby"] = described.strip()

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        others = Segment.objects.filter(name__iexact=name)
        if self.segment is not None:
            others = others.exclude(pk=self.segment.pk)
        if others.exists():
            raise forms.ValidationError("Another segment already has this name.")
        return name

    def clean_rules(self):
        rules = self.cleaned_data["rules"]
        try:
            rules_validate(rules)
        except RulesError as error:
            raise forms.ValidationError(error.errors) from None
        return rules
