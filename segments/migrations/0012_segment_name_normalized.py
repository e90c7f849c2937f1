"""Normalize stored segment names as the form now does (segments.names).

A copy of the normalization, not an import: a migration must keep doing
what it did when it was written. Names already normal keep their name;
a name that becomes equal (ignoring case) to another gets " (2)", " (3)"...
"""

import unicodedata

from django.db import migrations

MAX_LENGTH = 200
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")


def normalize(name: str) -> str:
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        ch
        for ch in text
        if ch.isspace() or not (unicodedata.category(ch) in ("Cf", "Cc") or ch in _INVISIBLE)
    )
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def normalize_names(apps, schema_editor):
    Segment = apps.get_model("segments", "Segment")
    rows = list(Segment.objects.order_by("pk").values_list("pk", "name"))
    # Names that need no change are placed first, so they keep their name.
    rows.sort(key=lambda row: (normalize(row[1]) != row[1], row[0]))
    taken: set[str] = set()
    for pk, name in rows:
        base = normalize(name) or f"Segment {pk}"
        new, n = base, 1
        while new.casefold() in taken:
            n += 1
            suffix = f" ({n})"
            new = base[: MAX_LENGTH - len(suffix)].rstrip() + suffix
        taken.add(new.casefold())
        if new != name:
            # update(), so updated_at keeps saying when a person last edited it.
            Segment.objects.filter(pk=pk).update(name=new)


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0011_deletion_receipt"),
    ]

    operations = [
        migrations.RunPython(normalize_names, migrations.RunPython.noop),
    ]
