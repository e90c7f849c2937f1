from django import forms

from messaging.models import AudienceSegment


class SegmentIdField(forms.IntegerField):
    """A segment's id, with messages a marketer can act on."""

    def __init__(self, **kwargs):
        super().__init__(
            min_value=1,
            max_value=2**63 - 1,
            error_messages={
                "required": "Choose a segment.",
                "invalid": "Choose a segment from the list.",
                "min_value": "Choose a segment from the list.",
                "max_value": "Choose a segment from the list.",
            },
            **kwargs,
        )


class AudienceAddForm(forms.Form):
    segment = SegmentIdField(label="Segment")
    mode = forms.ChoiceField(
        label="Include or exclude",
        choices=[
            (AudienceSegment.Mode.INCLUDE, "Include: send to its people"),
            (AudienceSegment.Mode.EXCLUDE, "Exclude: never send to its people"),
        ],
        error_messages={
            "required": "Choose whether to include or exclude the segment.",
            "invalid_choice": "Choose whether to include or exclude the segment.",
        },
    )


class AudienceRemoveForm(forms.Form):
    segment = SegmentIdField()


class AudienceUndoForm(forms.Form):
    change = forms.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        error_messages={
            "required": "There is no such change to undo on this campaign.",
            "invalid": "There is no such change to undo on this campaign.",
            "min_value": "There is no such change to undo on this campaign.",
            "max_value": "There is no such change to undo on this campaign.",
        },
    )
