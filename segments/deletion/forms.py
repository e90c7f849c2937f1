from django import forms

from segments.names import segment_name_mismatch


class DeleteProfilesForm(forms.Form):
    """Type the segment's exact name to confirm. No case folding: "Trial
    users" is not "trial users". Both are compared normalized (see
    ``segments.names``), so spaces at the ends or doubled, and invisible
    characters, do not count; look-alike letters from another alphabet do,
    and the message says which."""

    typed_name = forms.CharField(
        label="Type the segment's name to confirm",
        strip=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        error_messages={"required": "Type the segment's name to confirm. Nothing was deleted."},
    )
    # The number of profiles the dialog showed: the confirmation is for that many.
    expected_count = forms.IntegerField(
        min_value=0,
        widget=forms.HiddenInput,
        error_messages={
            "required": "The dialog's profile count is missing; open it again. Nothing was deleted."
        },
    )

    # Which membership the dialog showed (segment_membership_token): the
    # confirmation is for those people, not for whoever a later refresh adds.
    membership_token = forms.CharField(
        max_length=64,
        widget=forms.HiddenInput,
        error_messages={
            "required": "The dialog's membership stamp is missing; open it again. "
            "Nothing was deleted."
        },
    )

    # Off by default: a person deleted and identified again comes back as a
    # new profile unless the confirmer chooses otherwise.
    suppress = forms.BooleanField(
        label="Also stop these people from coming back",
        required=False,
        help_text="The API will accept and discard anything sent later for their user id or "
        "email, so they are not created again. An admin can lift this per person.",
    )

    def __init__(self, *args, segment, **kwargs):
        super().__init__(*args, **kwargs)
        self.segment = segment
        self.fields["typed_name"].widget.attrs["data-confirm-match"] = segment.name

    def clean_typed_name(self):
        typed = self.cleaned_data["typed_name"]
        mismatch = segment_name_mismatch(typed, self.segment.name)
        if mismatch:
            raise forms.ValidationError(mismatch)
        return typed
