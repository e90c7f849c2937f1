"""Segment names: one spelling for each name people see.

"Café" can be typed with a composed é or an e and a combining accent, can
carry an invisible zero-width space, or a Cyrillic "Es" that looks exactly
like a Latin "C". Without care those are four segments that look the same,
and the type-the-name check before a deletion fails for the one a keyboard
cannot type, without saying why. So:

- every name is normalized when it is saved and before it is compared
  (``segment_name_normalize``): Unicode NFC, invisible characters removed,
  spaces trimmed and runs of spaces made one;
- a new or changed name may not mix Latin letters with Cyrillic or Greek
  ones inside one word (``segment_name_problem``): "Cafe" typed with a
  Cyrillic Es is refused, a Greek word beside a Latin one is fine. It is
  a simple rule a marketer can understand, and it catches the look-alikes
  that matter here; nor may it look like another segment's name once
  look-alike letters read as Latin (``segment_name_skeleton``), which
  catches a word typed wholly in Cyrillic or Greek look-alikes;
- a typed confirmation is compared after the same normalization, and when it
  differs only by look-alike letters, the message says which letter
  (``segment_name_mismatch``).

The data migration ``0012_segment_name_normalized`` keeps its own copy of
the normalization, as migrations must not change when this module does.
"""

import re
import unicodedata

# Invisible, yet not in the "format" category: the combining grapheme
# joiner, the Hangul and Khmer fillers, the blank braille pattern and the
# variation selectors (which only pick a glyph's style, e.g. an emoji's).
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0\u2800"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_WORD = re.compile(r"\w+")
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")

# Cyrillic and Greek letters that look like a Latin one, by Unicode name.
_LOOK_ALIKE_NAMES = {
    "CYRILLIC CAPITAL LETTER": "A:A VE:B ES:C IE:E EN:H BYELORUSSIAN-UKRAINIAN_I:I JE:J KA:K "
    "EM:M O:O ER:P DZE:S TE:T HA:X U:Y STRAIGHT_U:Y",
    "CYRILLIC SMALL LETTER": "A:a IE:e BYELORUSSIAN-UKRAINIAN_I:i JE:j O:o ER:p DZE:s ES:c "
    "HA:x U:y KOMI_DE:d SHHA:h QA:q WE:w PALOCHKA:l",
    "GREEK CAPITAL LETTER": "ALPHA:A BETA:B EPSILON:E ZETA:Z ETA:H IOTA:I KAPPA:K MU:M NU:N "
    "OMICRON:O RHO:P TAU:T UPSILON:Y CHI:X",
    "GREEK SMALL LETTER": "OMICRON:o IOTA:i NU:v",
}
_LOOK_ALIKES = str.maketrans(
    {
        unicodedata.lookup(f"{prefix} {name.replace('_', ' ')}"): latin
        for prefix, pairs in _LOOK_ALIKE_NAMES.items()
        for name, latin in (pair.split(":") for pair in pairs.split())
    }
)


def segment_name_normalize(name: str) -> str:
    """The name as stored and compared: NFC, no invisible characters
    (format characters such as zero-width spaces and joiners, the BOM, soft
    hyphens; control characters), no leading or trailing space, and one
    plain space wherever there was a run of spaces of any kind."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(ch for ch in text if ch.isspace() or not _is_invisible(ch))
    # Removing a joiner can bring a letter and its accent together again.
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def _is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Cc") or ch in _INVISIBLE


def segment_name_problem(name: str) -> str | None:
    """Why a (normalized) name cannot be given to a segment, or None."""
    for word in _WORD.findall(name):
        scripts = {_script(ch) for ch in word} - {None}
        if len(scripts) > 1:
            found = " and ".join(script.capitalize() for script in _SCRIPTS if script in scripts)
            return (
                f"“{word}” mixes {found} letters that can look alike, so two names "
                "could look the same. Type the word in one alphabet."
            )
    return None


def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    return next((script for script in _SCRIPTS if name.startswith(script + " ")), None)


def segment_name_skeleton(name: str) -> str:
    """What a (normalized) name looks like: Cyrillic and Greek look-alike
    letters read as the Latin ones, capitals as small letters. "COO" typed with Cyrillic
    letters uses one alphabet, so ``segment_name_problem`` lets it through,
    yet it looks exactly like the Latin "COO"."""
    return name.translate(_LOOK_ALIKES).lower()


def segment_name_matches(typed: str, name: str) -> bool:
    return segment_name_normalize(typed) == segment_name_normalize(name)


def segment_name_mismatch(
    typed: str, name: str, *, nothing_done: str = "Nothing was deleted."
) -> str | None:
    """None when ``typed`` is the name (after normalization); otherwise what
    to tell the person who typed it, in plain words, ending with
    ``nothing_done``."""
    typed, name = segment_name_normalize(typed), segment_name_normalize(name)
    if typed == name:
        return None
    if typed.translate(_LOOK_ALIKES) == name.translate(_LOOK_ALIKES):
        theirs, ours = next((t, n) for t, n in zip(typed, name, strict=True) if t != n)
        return (
            f"That looks like the segment's name, but a letter is a different character: "
            f"the name has “{ours}” ({_letter_name(ours)}) where you typed “{theirs}” "
            f"({_letter_name(theirs)}). Copy the name from this page, or ask an editor to "
            f"rename the segment. {nothing_done}"
        )
    return (
        "That is not the segment's name. Type it exactly as shown, with the same "
        f"capitals. {nothing_done}"
    )


def _letter_name(ch: str) -> str:
    return unicodedata.name(ch, "an unnamed character").capitalize()
