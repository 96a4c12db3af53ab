"""Keyword-swap augmentation that teaches the generators to copy object names they never saw.

An object keyword that literally occurs in the comment is replaced, in the keywords and in the
comment, by another Korean object name; a particle attached to it is re-chosen for the new word
(이/가, 을/를, 은/는, 와/과, 으로/로 …) because the right form depends on whether the word ends in a
final consonant (batchim).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from inference.text.josa import HANGUL_FIRST, HANGUL_LAST, mentions_word, replace_word
from training.data import KEYWORD_SEPARATOR, Pair

logger = logging.getLogger(__name__)


def swap_object_keywords(
    pair: Pair, pool: Sequence[str], rng: random.Random, *, mentioned_only: bool = True
) -> Pair | None:
    """A copy of ``pair`` with each literally-mentioned object keyword swapped for a pool name.

    ``None`` when no object keyword occurs literally in the comment (nothing to teach). Keywords
    that do not occur in the comment are left alone, as are emotions, unless ``mentioned_only`` is
    False (the unseen-keyword test set: every object keyword becomes a new name).
    """
    keywords = pair.keyword_list
    mentioned = [k for k in pair.object_keywords if mentions_word(pair.comment, k)]
    objects = mentioned if mentioned_only else list(dict.fromkeys(pair.object_keywords))
    if not objects:
        return None
    # Longest first: "자전거 바퀴" must be replaced before "바퀴".
    objects.sort(key=len, reverse=True)
    taken = set(keywords)
    choices = [name for name in pool if name not in taken]
    if len(choices) < len(objects):
        return None
    replacements = dict(zip(objects, rng.sample(choices, len(objects)), strict=True))
    if any(old in other for old in objects for other in objects if other != old):
        # Nested keywords ("바퀴" inside "자전거 바퀴") would be replaced twice: swap only the longest.
        replacements = {objects[0]: replacements[objects[0]]}
    comment = pair.comment
    for old, new in replacements.items():
        if old in mentioned:
            comment = replace_word(comment, old, new)
    new_keywords = KEYWORD_SEPARATOR.join(replacements.get(k, k) for k in keywords)
    return Pair(keywords=new_keywords, comment=comment)


def common_syllables() -> list[str]:
    """The 2,350 Hangul syllables of KS X 1001 (those EUC-KR can encode): the everyday ones."""
    syllables = []
    for code in range(HANGUL_FIRST, HANGUL_LAST + 1):
        char = chr(code)
        # Python's EUC-KR codec spells the other 8,822 syllables as 8-byte make-up sequences.
        if len(char.encode("euc-kr")) == 2:
            syllables.append(char)
    return syllables


def random_name(rng: random.Random, syllables: Sequence[str]) -> str:
    """A made-up object name such as "로부탄" or "미소 갈리": 1–2 words of 1–4 syllables."""
    words = 2 if rng.random() < 0.25 else 1
    return " ".join("".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(words))


def augment_pairs(
    pairs: Sequence[Pair], pool: Sequence[str], *, copies: int, seed: int, synthetic_share: float = 0.0
) -> list[Pair]:
    """``copies`` keyword-swapped variants of every pair that mentions an object keyword.

    A ``synthetic_share`` of the variants get made-up names of random common syllables instead of
    pool names: a model can memorise a few hundred real names, but only copying from its input
    gets made-up ones right, and copying is what unseen object names need.
    """
    rng = random.Random(seed)
    syllables = common_syllables() if synthetic_share > 0 else []
    augmented: list[Pair] = []
    for _ in range(copies):
        for pair in pairs:
            names = pool
            if syllables and rng.random() < synthetic_share:
                names = [random_name(rng, syllables) for _ in range(4)]
            variant = swap_object_keywords(pair, names, rng)
            if variant is not None:
                augmented.append(variant)
    logger.info(
        "augmentation: %d swapped pairs from %d originals (%d copies)", len(augmented), len(pairs), copies
    )
    return augmented


def unseen_keyword_pairs(pairs: Sequence[Pair], holdout: Sequence[str], *, seed: int) -> list[Pair]:
    """Test pairs whose object keywords are all replaced by held-out names no training pair has."""
    rng = random.Random(seed)
    unseen = []
    for pair in pairs:
        variant = swap_object_keywords(pair, holdout, rng, mentioned_only=False)
        if variant is not None and all(k in holdout for k in variant.object_keywords):
            unseen.append(variant)
    return unseen
