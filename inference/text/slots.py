"""Object slots: the generator writes ``<obj1>`` where the first object name goes; we put the name in.

Small generators trained on 186 distinct keywords cannot spell object names they never saw (a
user's photo brings hundreds more), so a generator whose ``generator.json`` has
``"object_slots": true`` gets each object keyword followed by its slot token
(``기쁨, 안경 <obj1>, 나무 <obj2>``) and writes the slot instead of the name
(``<obj1>가 잘 어울려요``). ``fill_slots`` puts the names back and re-chooses each particle for
the real word (``안경이 잘 어울려요``). The name stays in the prompt, so the model still knows
what kind of thing it is writing about.

Training uses the same functions: ``slot_keywords`` with ``mentioned`` slots only the objects the
reference comment names (so a slot always means "mention this"), and ``empty_slots`` turns those
names in the comment into slot tokens.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from inference.text.josa import replace_token, replace_word
from inference.text.keywords import format_keywords
from inference.text.labels import EMOTION_KEYWORDS

MAX_SLOTS = 8
SLOT_TOKENS: tuple[str, ...] = tuple(f"<obj{i}>" for i in range(1, MAX_SLOTS + 1))
_ANY_SLOT = re.compile(r"<obj\d+>")


@dataclass(frozen=True, slots=True)
class SlottedKeywords:
    """The prompt's keyword string and which object name each slot token stands for."""

    text: str
    names: dict[str, str]  # "<obj1>" → "안경", in slot order


def slot_keywords(keywords: Sequence[str], mentioned: Collection[str] | None = None) -> SlottedKeywords:
    """``["기쁨", "안경", "나무"]`` → ``기쁨, 안경 <obj1>, 나무 <obj2>``.

    Emotions never get a slot. ``mentioned`` (training only) limits slots to the objects the
    reference comment names; at inference every object gets one, up to ``MAX_SLOTS``.
    """
    parts: list[str] = []
    names: dict[str, str] = {}
    for keyword in keywords:
        wanted = mentioned is None or keyword in mentioned
        if keyword in EMOTION_KEYWORDS or not wanted or len(names) == MAX_SLOTS or keyword in names.values():
            parts.append(keyword)
            continue
        token = SLOT_TOKENS[len(names)]
        names[token] = keyword
        parts.append(f"{keyword} {token}")
    return SlottedKeywords(format_keywords(parts), names)


def empty_slots(comment: str, names: dict[str, str]) -> str:
    """The training target: each slotted name in ``comment`` replaced by its slot token.

    Particles after a slot are normalised to the after-a-vowel form (``<obj1>가``, ``<obj1>를``), so
    the model learns one spelling and ``fill_slots`` picks the right one for the real word.
    Longest names first: "자전거 바퀴" before "바퀴".
    """
    for token, name in sorted(names.items(), key=lambda item: len(item[1]), reverse=True):
        comment = replace_word(comment, name, token)
    return comment


def fill_slots(text: str, names: dict[str, str]) -> str:
    """Put the object names back into a generated comment, with particles that fit each name."""
    for token, name in names.items():
        text = replace_token(text, token, name)
    return text


def leftover_slots(text: str) -> list[str]:
    """Slot tokens still in a filled comment: the model wrote a slot with no object behind it."""
    return _ANY_SLOT.findall(text)


def missing_slots(text: str, names: dict[str, str]) -> int:
    """How many of the prompt's slots a generated (unfilled) comment leaves out."""
    return sum(token not in text for token in names)
