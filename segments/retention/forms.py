from django import forms

from segments.models import RetentionSchedule
from segments.names import segment_name_mismatch
from segments.retention.timing import schedule_timezone

# A run may delete at most this many; beyond it, a mistyped limit is likelier
# than a real one (the manual deletion has no such cap).
MAX_PROFILES_CEILING = 10_000_000


class RetentionScheduleForm(forms.Form):
    """When to delete the segment's members, how many at most, and the
    segment's exact name, compared as the manual deletion's dialog does."""

    frequency = forms.ChoiceField(
        label="How often",
        choices=RetentionSchedule.Frequency.choices,
        initial=RetentionSchedule.Frequency.WEEKLY,
        widget=forms.RadioSelect,
    )
    weekday = forms.TypedChoiceField(
        label="On (for every week)",
        choices=RetentionSchedule.Weekday.choices,
        coerce=int,
        required=False,
        empty_value=None,
        initial=RetentionSchedule.Weekday.MONDAY,
    )
    time_of_day = forms.TimeField(
        label="At (time of day)",
        initial="03:00",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        error_messages={
            "required": "Choose a time of day, like 03:00. No schedule was created.",
            "invalid": "Give the time as hours and minutes, like 03:00. No schedule was created.",
        },
    )
    max_profiles = forms.IntegerField(
        label="Most profiles a run may delete",
        min_value=1,
        max_value=MAX_PROFILES_CEILING,
        help_text="If a run finds more people than this, it deletes nobody, pauses the "
        "schedule and emails you.",
        error_messages={
            "required": "Give the most profiles a run may delete. No schedule was created.",
            "invalid": "Give a whole number of profiles. No schedule was created.",
            "min_value": "A run must be allowed to delete at least 1 profile. "
            "No schedule was created.",
            "max_value": f"A run may delete at most {MAX_PROFILES_CEILING:,} profiles. "
            "No schedule was created.",
        },
    )
    typed_name = forms.CharField(
        label="Type the segment's name to confirm",
        strip=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        error_messages={
            "required": "Type the segment's name to confirm. No schedule was created.",
            "max_length": "That is not the segment's name. No schedule was created.",
        },
    )

    def __init__(self, *args, segment, **kwargs):
        super().__init__(*args, **kwargs)
        self.segment = segment
        self.fields["typed_name"].widget.attrs["data-confirm-match"] = segment.name
        self.fields["time_of_day"].label = f"At (time of day, {schedule_timezone().key})"

    def full_clean(self):
        """Tie each error to its field for screen readers (Django ties the help)."""
        super().full_clean()
        for name in self.errors:
            if name in self.fields and name != "typed_name":
                bound = self[name]
                ids = [f"{bound.auto_id}_error"]
                if self.fields[name].help_text:
                    ids.append(f"{bound.auto_id}_helptext")
                self.fields[name].widget.attrs["aria-describedby"] = " ".join(ids)

    # The same comparison as the manual deletion (segments.names).
    def clean_typed_name(self):
        typed = self.cleaned_data["typed_name"]
        mismatch = segment_name_mismatch(
            typed, self.segment.name, nothing_done="No schedule was created."
        )
        if mismatch:
            raise forms.ValidationError(mismatch)
        return typed

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("frequency") == RetentionSchedule.Frequency.WEEKLY:
            if cleaned.get("weekday") is None:
                self.add_error("weekday", "Choose the day of the week. No schedule was created.")
        else:
            cleaned["weekday"] = None
        return cleaned
