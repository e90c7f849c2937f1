from django import forms

from segments.builder import Builder
from segments.models import Segment
from segments.names import segment_name_normalize, segment_name_problem, segment_name_skeleton


def segment_name_clean(name: str, *, segment: Segment | None) -> str:
    """The name to save, or ValidationError: normalized, unique among the
    other segments ignoring case, and (when new or changed) neither mixing
    look-alike alphabets within a word nor looking like another segment's
    name written in another alphabet (``segment_name_skeleton``)."""
    name = segment_name_normalize(name)
    if not name:
        raise forms.ValidationError("Give the segment a name with visible letters.")
    unchanged = segment is not None and segment_name_normalize(segment.name) == name
    problem = None if unchanged else segment_name_problem(name)
    if problem:
        raise forms.ValidationError(problem)
    others = Segment.objects.filter(name__iexact=name)
    if segment is not None:
        others = others.exclude(pk=segment.pk)
    if others.exists():
        raise forms.ValidationError("Another segment already has this name.")
    if not unchanged:
        skeleton = segment_name_skeleton(name)
        others = Segment.objects.exclude(pk=segment.pk) if segment else Segment.objects.all()
        for other in others.values_list("name", flat=True).iterator():
            if segment_name_skeleton(other) == skeleton:
                raise forms.ValidationError(
                    f"The name of another segment, “{other}”, looks the same: some of the "
                    "letters are from another alphabet. Choose a name that looks different."
                )
    return name


class SegmentForm(forms.Form):
    """A segment's name, description and rules.

    The rules come from the builder (``segments.builder``): its rows, or the
    JSON when that was edited. Rule problems are shown where they are: on
    their row, or under the JSON.
    """

    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    rules = forms.CharField(required=False, strip=False)

    def __init__(self, *args, builder: Builder, segment: Segment | None = None, **kwargs):
        self.segment = segment
        self.builder = builder
        if segment is not None:
            kwargs.setdefault("initial", {"name": segment.name, "description": segment.description})
        super().__init__(*args, **kwargs)

    def clean_name(self):
        """Normalized (see ``segments.names``), and unique ignoring case."""
        return segment_name_clean(self.cleaned_data["name"], segment=self.segment)

    def clean_rules(self):
        if self.builder.json_errors:
            raise forms.ValidationError(self.builder.json_errors)
        return self.builder.rules

    def clean(self):
        if not self.builder.json_errors and not self.builder.is_valid:
            self.add_error(None, "Some conditions need fixing: see the marked rows.")
        return super().clean()
