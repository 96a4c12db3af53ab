"""Korean particles (josa) that depend on the word before them: 안경이 / 모자가, 책으로 / 연필로.

Used wherever a word is put into a sentence it was not written with: the comment generators'
object slots (``<obj1>가 멋져요`` → ``안경이 멋져요``), the template fallback comment, and the
training data's keyword-swap augmentation.
"""

from __future__ import annotations

import re

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3  # 가 … 힣: the precomposed syllables
_RIEUL_JONGSEONG = 8  # index of ㄹ among the 28 final-consonant slots

# (form after a consonant, form after a vowel); longest first so 이에요 wins over 이.
PARTICLES: tuple[tuple[str, str], ...] = (
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
PARTICLE_FORMS: tuple[str, ...] = tuple(
    sorted({form for pair in PARTICLES for form in pair}, key=len, reverse=True)
)
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
ENDINGS: tuple[str, ...] = tuple(sorted((*PARTICLE_FORMS, *_INVARIANT_ENDINGS), key=len, reverse=True))
_ENDING_ALTERNATIVES = "|".join(map(re.escape, ENDINGS))
_HANGUL = "[가-힣]"


def final_consonant(word: str) -> int:
    """Index of the last syllable's final consonant (0: none, 8: ㄹ); 0 for non-Hangul endings."""
    last = word.rstrip()[-1:] if word.strip() else ""
    code = ord(last) if last else 0
    if not HANGUL_FIRST <= code <= HANGUL_LAST:
        return 0
    return (code - HANGUL_FIRST) % 28


def attach_particle(word: str, particle: str) -> str:
    """``word`` + the form of ``particle`` that fits it: attach_particle("모자", "이") == "모자가"."""
    jong = final_consonant(word)
    for after_consonant, after_vowel in PARTICLES:
        if particle in (after_consonant, after_vowel):
            if after_consonant == "으로":  # ㄹ-final words take 로: 연필로, 책으로
                return word + ("으로" if jong not in (0, _RIEUL_JONGSEONG) else "로")
            return word + (after_consonant if jong else after_vowel)
    return word + particle


def _word_pattern(word: str) -> re.Pattern[str]:
    """``word`` as a whole word, optionally followed by one ending (not by more Hangul: 차 ≠ 차분한)."""
    return re.compile(f"(?<!{_HANGUL}){re.escape(word)}(들{_HANGUL}*|{_ENDING_ALTERNATIVES})?(?!{_HANGUL})")


def mentions_word(text: str, word: str) -> bool:
    """True when every occurrence of ``word`` in ``text`` is a whole word we know how to replace."""
    found = len(_word_pattern(word).findall(text))
    return found > 0 and found == text.count(word)


def _with_particle(new: str, ending: str) -> str:
    return attach_particle(new, ending) if ending in PARTICLE_FORMS else new + ending


def replace_word(text: str, old: str, new: str) -> str:
    """Replace the whole-word occurrences of ``old`` by ``new``, fixing a particle attached to it."""
    return _word_pattern(old).sub(lambda match: _with_particle(new, match.group(1) or ""), text)


def replace_token(text: str, token: str, new: str) -> str:
    """Replace every ``token`` (a placeholder such as ``<obj1>``) by ``new``, fixing the particle after it.

    Unlike ``replace_word`` there are no word boundaries to respect: a placeholder is never part
    of a longer word, and whatever Hangul follows an ending (``<obj1>이랑도``) is kept as it is.
    """
    pattern = re.compile(f"{re.escape(token)}({_ENDING_ALTERNATIVES})?")
    return pattern.sub(lambda match: _with_particle(new, match.group(1) or ""), text)
