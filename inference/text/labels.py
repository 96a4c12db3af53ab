"""Class names from the weights → Korean keywords.

Emotion names are matched case-insensitively in English or Korean, so a 4-class model
(``anger, sad, panic, happy``), the 5-class one (+ ``neutral``) and models trained on other
label sets (``angry``, ``surprise``, ``fear`` …) all work without code changes.

Object names are looked up in the shipped maps ``inference/data/oiv7_ko.json`` (601 Open Images V7
classes) and ``coco_ko.json`` (80 COCO classes) and ``voc_ko.json`` (the 20 PASCAL VOC classes of the shipped
everyday detector), keyed by the English name ultralytics uses.
The OIV7 map follows the research project's names (the comment training data uses them) with
wrong or awkward machine translations fixed by hand (``박쥐 (동물)`` → ``박쥐``, ``하프 조개`` →
``물범`` for Harbor seal, ``탭`` → ``수도꼭지`` for Tap, ``터키`` → ``칠면조`` …).

Torch-free: plain dictionaries and JSON.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources

logger = logging.getLogger(__name__)

# Class order of the shipped face-emotion detectors (ids 0-4 of the joint everyday model too).
EMOTION_CLASSES: tuple[str, ...] = ("anger", "sad", "panic", "happy", "neutral")
NEUTRAL_CLASS = "neutral"  # a face seen without a mood to name

# The four emotion keywords the comment data uses; neutral faces get no keyword.
ANGER, SADNESS, FEAR, JOY = "분노", "슬픔", "공포", "기쁨"
EMOTION_KEYWORDS: frozenset[str] = frozenset({ANGER, SADNESS, FEAR, JOY})

_EMOTION_BY_NAME: dict[str, str | None] = {
    # English names used by the shipped models and common face-emotion datasets
    "anger": ANGER,
    "angry": ANGER,
    "disgust": ANGER,  # the training data merges disgust into anger
    "sad": SADNESS,
    "sadness": SADNESS,
    "panic": FEAR,
    "fear": FEAR,
    "surprise": FEAR,
    "surprised": FEAR,
    "happy": JOY,
    "happiness": JOY,
    "joy": JOY,
    "neutral": None,
    # Korean names (AI-Hub labels)
    "분노": ANGER,
    "슬픔": SADNESS,
    "공포": FEAR,
    "당황": FEAR,
    "기쁨": JOY,
    "행복": JOY,
    "중립": None,
    "무표정": None,
}

# Object labels that say nothing a comment could use: the person is already covered by the face
# and its emotion, and "clothing"/"body part" would crowd out the interesting objects.
EXCLUDED_OBJECT_KEYWORDS: frozenset[str] = frozenset(
    {
        # people
        "사람",
        "남자",
        "여자",
        "소년",
        "소녀",
        # the person's own body, detected on nearly every photo of someone
        "인간의 얼굴",
        "인간의 머리",
        "인간의 몸",
        "인체",
        "인간 눈",
        "인간 귀",
        "인간의 코",
        "인간의 입",
        "인간의 머리카락",
        "인간의 팔",
        "인간의 손",
        "인간 다리",
        "인간의 발",
        # too generic
        "의류",
    }
)

_warned_unknown: set[str] = set()


def emotion_keyword(label: str) -> str | None:
    """Korean emotion keyword for a class name, ``None`` for neutral and unknown names."""
    key = label.strip().lower()
    if key in _EMOTION_BY_NAME:
        return _EMOTION_BY_NAME[key]
    _warn_once(f"emotion:{label}", "unknown emotion class %r: no keyword", label)
    return None


def is_known_emotion(label: str) -> bool:
    return label.strip().lower() in _EMOTION_BY_NAME


@cache
def object_label_map() -> dict[str, str]:
    """English class name → Korean name, COCO and Open Images V7 merged (shipped data)."""
    merged: dict[str, str] = {}
    for filename in ("coco_ko.json", "oiv7_ko.json", "voc_ko.json"):
        merged.update(_load_map(filename))
    return merged


@cache
def _lowercase_map() -> dict[str, str]:
    return {name.lower(): korean for name, korean in object_label_map().items()}


def _load_map(filename: str) -> dict[str, str]:
    text = resources.files("inference").joinpath("data", filename).read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def korean_object_name(label: str) -> str | None:
    """Korean name of an object class (``None`` when the name is not in any shipped map)."""
    exact = object_label_map().get(label)
    if exact is not None:
        return exact
    folded = _lowercase_map().get(label.strip().lower())
    if folded is None:
        _warn_once(f"object:{label}", "no Korean name for object class %r: no keyword", label)
    return folded


def object_keyword(label: str) -> str | None:
    """Korean keyword for an object class; ``None`` for unknown names and excluded generic labels."""
    korean = korean_object_name(label)
    if korean is None or korean in EXCLUDED_OBJECT_KEYWORDS:
        return None
    return korean


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned_unknown:
        _warned_unknown.add(key)
        logger.warning(message, *args)
