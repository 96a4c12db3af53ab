"""Keyword-swap augmentation that teaches the generators to copy object names they never saw.

An object keyword that literally occurs in the comment is replaced, in the keywords and in the
comment, by another Korean object name; a particle attached to it is re-chosen for the new word
(이/가, 을/를, 은/는, 와/과, 으로/로 …) because the right form depends on whether the word ends in a
final consonant (batchim).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence

from training.data import KEYWORD_SEPARATOR, Pair

logger = logging.getLogger(__name__)

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_RIEUL_JONGSEONG = 8  # index of ㄹ among the 28 final-consonant slots

# (form after a consonant, form after a vowel); longest first so 이에요 wins over 이.
_PARTICLES: tuple[tuple[str, str], ...] = (
    ("이에요", "예요"),
    ("이었", "였"),
    ("이네요", "네요"),
    ("이라서", "라서"),
    ("이라", "라"),
    ("이랑", "랑"),
    ("이나", "나"),
    ("이죠", "죠"),
    ("으로", "로"),
    ("과", "와"),
    ("을", "를"),
    ("은", "는"),
    ("이", "가"),
    ("아", "야"),
)
_PARTICLE_FORMS = sorted({form for pair in _PARTICLES for form in pair}, key=len, reverse=True)
# Endings that fit any word (에서, 의, 도 …) and plural 들+anything: kept as they are.
_INVARIANT_ENDINGS = (
    "에서",
    "에게",
    "에는",
    "에도",
    "에",
    "의",
    "도",
    "만",
    "까지",
    "처럼",
    "보다",
    "인가요",
    "인지",
    "인",
)
_ENDINGS = sorted((*_PARTICLE_FORMS, *_INVARIANT_ENDINGS), key=len, reverse=True)
_HANGUL = "[가-힣]"


def final_consonant(word: str) -> int:
    """Index of the last syllable's final consonant (0: none, 8: ㄹ); 0 for non-Hangul endings."""
    last = word.rstrip()[-1:] if word.strip() else ""
    code = ord(last) if last else 0
    if not _HANGUL_FIRST <= code <= _HANGUL_LAST:
        return 0
    return (code - _HANGUL_FIRST) % 28


def attach_particle(word: str, particle: str) -> str:
    """``word`` + the form of ``particle`` that fits it: attach_particle("모자", "이") == "모자가"."""
    jong = final_consonant(word)
    for after_consonant, after_vowel in _PARTICLES:
        if particle in (after_consonant, after_vowel):
            if after_consonant == "으로":  # ㄹ-final words take 로: 연필로, 책으로
                return word + ("으로" if jong not in (0, _RIEUL_JONGSEONG) else "로")
            return word + (after_consonant if jong else after_vowel)
    return word + particle


def _word_pattern(word: str) -> re.Pattern[str]:
    """``word`` as a whole word, optionally followed by one ending (not by more Hangul: 차 ≠ 차분한)."""
    endings = "|".join(map(re.escape, _ENDINGS))
    return re.compile(f"(?<!{_HANGUL}){re.escape(word)}(들{_HANGUL}*|{endings})?(?!{_HANGUL})")


def mentions_word(text: str, word: str) -> bool:
    """True when every occurrence of ``word`` in ``text`` is a whole word we know how to replace."""
    found = len(_word_pattern(word).findall(text))
    return found > 0 and found == text.count(word)


def replace_word(text: str, old: str, new: str) -> str:
    """Replace the whole-word occurrences of ``old`` by ``new``, fixing a particle attached to it."""

    def substitute(match: re.Match[str]) -> str:
        ending = match.group(1) or ""
        if ending in _PARTICLE_FORMS:
            return attach_particle(new, ending)
        return new + ending

    return _word_pattern(old).sub(substitute, text)


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
    for code in range(_HANGUL_FIRST, _HANGUL_LAST + 1):
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
