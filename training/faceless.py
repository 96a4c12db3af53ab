"""Training pairs for photos where no face shows an emotion, made from the people's own comments.

Every one of the 5,394 pairs starts from an emotion (all but 53 name one), so a generator given
only object keywords has never seen such a prompt and reads a mood into the photo anyway
(``training.evaluate_honesty``: 6–17% of its comments). The comments themselves are mostly a mood
sentence followed by sentences about the things (``"정말 행복해 보이시네요! 😄 안경이 잘
어울려요! 🌳"``): dropping the sentences that read a mood, an expression or a smile leaves what a
person wrote about the things, and the emotion keywords go with them (``"안경"`` →
``"안경이 잘 어울려요! 🌳"``). A pair gives nothing when no sentence about a thing is left or the
rest has no emoji.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from inference.text.choice import has_emoji
from inference.text.josa import HANGUL_FIRST, HANGUL_LAST, mentions_word
from inference.text.labels import ANGER, FEAR, SADNESS
from inference.text.templates import reads_feeling
from training.data import KEYWORD_SEPARATOR, Pair

logger = logging.getLogger(__name__)

# A sentence ends at . ! ? … ~ (runs of them) and the emojis and spaces after them.
_SENTENCE = re.compile(r".*?(?:[.!?…~]+(?:\s*[^\w\s])*\s*|$)", re.DOTALL)
GLOOMY = frozenset({ANGER, SADNESS, FEAR})
# Stricter than the bot's check (``reads_feeling``): in a happy pair even the viewer's joy ("기분이
# 좋아지네요") was written about a happy face, so any such word takes its sentence out.
_CHEERY = re.compile(
    "행복|기쁨|기뻐|기쁜|기쁘|웃음|웃는|웃고|웃으|웃어|미소|즐거|즐겁|신나|신난|편안|감정|기분|얼굴"
)
MIN_HANGUL = 6  # shorter leftovers ("멋져요!") say too little to be a comment


def sentences(text: str) -> list[str]:
    """``text`` cut after each sentence end, the emojis and spaces that follow kept with it."""
    return [part for part in _SENTENCE.findall(text) if part.strip()]


def faceless_pair(pair: Pair) -> Pair | None:
    """``pair`` without its emotions and without the sentences that read a feeling; ``None`` when
    what is left names no object keyword, has no emoji or is too short, and for a sad, angry or
    scared pair (its sentences about things still carry the mood: "불길해 보여요", "무슨 일이
    있었던 걸까요?")."""
    objects = list(dict.fromkeys(pair.object_keywords))
    if not objects or set(pair.keyword_list) & GLOOMY:
        return None
    kept = [s for s in sentences(pair.comment) if not (reads_feeling(s) or _CHEERY.search(s))]
    comment = "".join(kept).strip()
    if not comment or not has_emoji(comment) or _hangul_count(comment) < MIN_HANGUL:
        return None
    if not any(mentions_word(comment, name) for name in objects):
        return None
    return Pair(keywords=KEYWORD_SEPARATOR.join(objects), comment=comment)


def faceless_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    """One faceless pair per pair that gives one (``faceless_pair``), duplicates dropped."""
    made = list(dict.fromkeys(p for p in map(faceless_pair, pairs) if p is not None))
    logger.info("faceless pairs: %d from %d", len(made), len(pairs))
    return made


def _hangul_count(text: str) -> int:
    return sum(HANGUL_FIRST <= ord(char) <= HANGUL_LAST for char in text)
