"""What a person may type into a profile search (the profile list and a
segment's members)."""

from django import forms
from django.core.exceptions import ValidationError

from profiles import selectors

SEARCH_MAX_LENGTH = 255  # the longest user id; an email is at most 254


NOT_TEXT = "The search contains a character that is not valid text."


def _no_lone_surrogates(value: str) -> None:
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise ValidationError(NOT_TEXT)


class SearchForm(forms.Form):
    """A search box's ``?q=``: text of a sane length, without NUL or lone
    surrogates (PostgreSQL can neither store nor compare those)."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=SEARCH_MAX_LENGTH,
        validators=[_no_lone_surrogates],
        error_messages={
            "max_length": "The search is too long: at most %(limit_value)d characters.",
            "null_characters_not_allowed": NOT_TEXT,
        },
    )

    @classmethod
    def from_request(cls, request) -> "SearchForm":
        return cls({"q": request.GET.get("q", "")})

    @property
    def query(self) -> str:
        """The query to run: empty when the form is not valid."""
        return self.cleaned_data.get("q", "") if self.is_valid() else ""


class ProfileSearchForm(SearchForm):
    def search_context(self) -> dict:
        """What a search box shows beside its results: the query, whether it
        was too short to search inside the text, and the profile it names
        exactly (templates/profiles/_search_status.html)."""
        query = self.query
        return {
            "query": query,
            "search_form": self,
            "search_invalid": not self.is_valid(),
            "search_short": bool(query) and not selectors.search_uses_index(query),
            "exact_match": selectors.profile_exact_match(query=query) if query else None,
        }
