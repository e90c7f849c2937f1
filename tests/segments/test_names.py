"""Segment names that look the same are the same name, or are refused.

"Café" with a composed é, a decomposed é, a trailing zero-width space or a
Cyrillic Es for the C: one segment, not four. The type-the-name check
compares the same way and says when a letter is a look-alike.
"""

import importlib
import json

import pytest
from django.apps import apps

from profiles.models import Profile
from segments import services
from segments.deletion import services as deletion
from segments.deletion.selectors import segment_membership_token
from segments.models import DeletionJob, Segment
from segments.names import segment_name_mismatch, segment_name_normalize
from tests.segments.factories import SegmentFactory
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db

COMPOSED = "Caf\u00e9"  # é as one character
DECOMPOSED = "Cafe\u0301"  # e + combining acute accent
ZERO_WIDTH = "Caf\u00e9\u200b"  # a trailing zero-width space
CYRILLIC = "\u0421af\u00e9"  # Cyrillic capital Es, not a Latin C
RULES = {"match": "all", "conditions": [{"type": "subscription", "status": "subscribed"}]}


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        (COMPOSED, COMPOSED),
        (DECOMPOSED, COMPOSED),
        (ZERO_WIDTH, COMPOSED),
        ("\ufeffCaf\u00e9", COMPOSED),  # a byte-order mark
        ("Ca\u00adf\u00e9", COMPOSED),  # a soft hyphen
        ("Ca\u200df\u200c\u00e9", COMPOSED),  # zero-width joiner and non-joiner
        ("Cafe\u200b\u0301", COMPOSED),  # the accent finds its letter again
        ("  Caf\u00e9 \t\u00a0 club\u2003 ", f"{COMPOSED} club"),
        ("Trial\x07 users", "Trial users"),  # a control character
        (CYRILLIC, CYRILLIC),  # a real letter: kept (and refused by the form)
        ("Caf\u00e9\ufe0f", COMPOSED),  # a variation selector
        ("Caf\u00e9\u2800", COMPOSED),  # the blank braille pattern
        ("Caf\U000e0100\u00e9", COMPOSED),  # a supplementary variation selector
    ],
)
def test_names_are_normalized(typed, normal):
    assert segment_name_normalize(typed) == normal


def create(client, name):
    data = {"name": name, "description": "", "rules": json.dumps(RULES)}
    return client.post("/segments/new/", data)


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "async_task", lambda *args: calls.append(args))
    return calls


@pytest.mark.parametrize(
    "name", [DECOMPOSED, ZERO_WIDTH, f" {COMPOSED} ", "CAF\u00c9", "cafe\u0301"]
)
def test_a_name_that_looks_like_an_existing_one_is_taken(editor_client, enqueued, name):
    SegmentFactory(name=COMPOSED)
    response = create(editor_client, name)
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["Another segment already has this name."]
    assert Segment.objects.count() == 1


def test_a_name_mixing_cyrillic_and_latin_letters_in_a_word_is_refused(editor_client, enqueued):
    response = create(editor_client, CYRILLIC)
    assert response.status_code == 400
    [error] = response.context["form"].errors["name"]
    assert "mixes Latin and Cyrillic letters" in error
    assert not Segment.objects.exists()


@pytest.mark.parametrize(
    "name", ["\u0395\u03bb\u03bb\u03ac\u03b4\u03b1 customers", "Caf\u00e9 club"]
)
def test_words_in_one_alphabet_each_are_fine(editor_client, enqueued, name):
    assert create(editor_client, name).status_code == 302
    assert Segment.objects.get().name == name


@pytest.mark.parametrize(
    ("existing", "name"),
    [
        ("COO", "\u0421\u041e\u041e"),  # all three letters Cyrillic: one alphabet
        ("Cace club", "\u0421\u0430\u0441\u0435 club"),  # Cyrillic Es, a, es, ie
        ("\u0421\u041e\u041e", "coo"),  # and the other way round
        ("ABE", "\u0391\u0392\u0395"),  # Greek capitals
    ],
)
def test_a_name_in_another_alphabet_that_looks_like_an_existing_one_is_refused(
    editor_client, enqueued, existing, name
):
    SegmentFactory(name=existing)
    response = create(editor_client, name)
    assert response.status_code == 400
    [error] = response.context["form"].errors["name"]
    assert f"another segment, “{existing}”, looks the same" in error
    assert Segment.objects.count() == 1


def test_names_that_differ_in_spelling_not_in_alphabet_are_still_two_names(editor_client, enqueued):
    SegmentFactory(name="Stra\u00dfe club")
    assert create(editor_client, "Strasse club").status_code == 302


def test_renaming_to_a_look_alike_of_another_segment_is_refused(editor_client, enqueued):
    SegmentFactory(name="COO")
    segment = SegmentFactory(name="Trial", rules=RULES)
    data = {"name": "\u0421\u041e\u041e", "description": "", "rules": json.dumps(RULES)}
    response = editor_client.post(f"/segments/{segment.pk}/edit/", data)
    assert response.status_code == 400
    assert "looks the same" in response.context["form"].errors["name"][0]
    segment.refresh_from_db()
    assert segment.name == "Trial"


def test_a_name_is_saved_normalized(editor_client, enqueued):
    assert create(editor_client, f"  {DECOMPOSED}\u200b   club ").status_code == 302
    assert Segment.objects.get().name == f"{COMPOSED} club"


def test_a_name_of_invisible_characters_only_is_refused(editor_client, enqueued):
    response = create(editor_client, "\u200b\u200d")
    assert response.status_code == 400
    assert "visible letters" in response.context["form"].errors["name"][0]


def test_an_old_mixed_name_can_be_kept_while_editing_the_rest(editor_client, enqueued):
    segment = SegmentFactory(name=CYRILLIC, rules=RULES)
    data = {"name": CYRILLIC, "description": "new words", "rules": json.dumps(RULES)}
    assert editor_client.post(f"/segments/{segment.pk}/edit/", data).status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.description) == (CYRILLIC, "new words")


def test_the_services_store_the_normalized_name(alice, enqueued):
    segment = services.segment_create(name=ZERO_WIDTH, description="", rules=RULES, user=alice)
    assert Segment.objects.get(pk=segment.pk).name == COMPOSED
    services.segment_update(segment=segment, name=f"{DECOMPOSED}  2", description="", rules=RULES)
    assert Segment.objects.get(pk=segment.pk).name == f"{COMPOSED} 2"


def test_the_admin_form_normalizes_and_checks_the_name_too(enqueued):
    from segments.admin import SegmentAdminForm

    SegmentFactory(name=COMPOSED)
    data = {"name": DECOMPOSED, "description": "", "rules": json.dumps(RULES), "refresh_error": ""}
    form = SegmentAdminForm(data)
    assert not form.is_valid()
    assert form.errors["name"] == ["Another segment already has this name."]
    SegmentFactory(name="COO")
    form = SegmentAdminForm({**data, "name": "\u0421\u041e\u041e"})  # Cyrillic look-alikes
    assert not form.is_valid()
    assert "looks the same" in form.errors["name"][0]
    form = SegmentAdminForm({**data, "name": f"{DECOMPOSED} club\u200b"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == f"{COMPOSED} club"


# The type-the-name confirmation --------------------------------------------


@pytest.fixture
def population():
    return build_population(doomed=3, survivors=2, events_each=1, name=f"{COMPOSED} club")


def confirm(client, population, typed):
    data = {
        "typed_name": typed,
        "expected_count": 3,
        "membership_token": segment_membership_token(population.segment),
    }
    return client.post(f"/segments/{population.segment.pk}/delete-profiles/", data)


@pytest.mark.parametrize(
    "typed",
    [f"{DECOMPOSED} club", f"{ZERO_WIDTH} club", f" {COMPOSED}  club ", f"{COMPOSED}\u00a0club"],
)
def test_the_confirmation_accepts_the_name_however_its_letters_were_composed(
    population, alice, typed
):
    job = deletion.deletion_start(
        segment=population.segment, user=alice, typed_name=typed, expected_count=3
    ).job
    assert job.total == 3


def test_the_confirmation_says_when_a_letter_is_a_look_alike_from_another_alphabet(
    editor_client, population
):
    response = confirm(editor_client, population, f"{CYRILLIC} club")
    assert response.status_code == 400
    html = response.content.decode()
    assert "looks like the segment&#x27;s name, but a letter is a different character" in html
    assert "Latin capital letter c" in html and "Cyrillic capital letter es" in html
    assert not DeletionJob.objects.exists()
    assert Profile.objects.filter(pk__in=population.doomed).count() == 3


def test_a_look_alike_name_is_refused_by_the_service_too(population, alice):
    with pytest.raises(deletion.NameMismatch, match="Cyrillic capital letter es"):
        deletion.deletion_start(
            segment=population.segment, user=alice, typed_name=f"{CYRILLIC} club", expected_count=3
        )
    assert not DeletionJob.objects.exists()


def test_other_mismatches_keep_the_plain_message():
    message = segment_name_mismatch("cafe club", f"{COMPOSED} club")
    assert message.startswith("That is not the segment's name.")
    assert segment_name_mismatch(f"{DECOMPOSED} club", f"{COMPOSED} club") is None


# The data migration ----------------------------------------------------------


def test_the_migration_normalizes_stored_names_and_numbers_collisions():
    migration = importlib.import_module("segments.migrations.0012_segment_name_normalized")
    kept = SegmentFactory(name=COMPOSED)
    decomposed = SegmentFactory(name=DECOMPOSED)
    spaced = SegmentFactory(name=f"{ZERO_WIDTH}  ")
    other = SegmentFactory(name=" Trial\u200b   users ")
    invisible = SegmentFactory(name="\u200b")
    before = {s.pk: s.updated_at for s in Segment.objects.all()}

    migration.normalize_names(apps, None)

    names = dict(Segment.objects.values_list("pk", "name"))
    assert names[kept.pk] == COMPOSED
    assert {names[decomposed.pk], names[spaced.pk]} == {f"{COMPOSED} (2)", f"{COMPOSED} (3)"}
    assert names[other.pk] == "Trial users"
    assert names[invisible.pk] == f"Segment {invisible.pk}"
    assert {s.pk: s.updated_at for s in Segment.objects.all()} == before
    migration.normalize_names(apps, None)  # a second run changes nothing
    assert dict(Segment.objects.values_list("pk", "name")) == names
