"""Detections → the keyword string the comment generators were trained on, e.g. ``기쁨, 안경, 나무``.

Emotions come first (the comment data always starts with the emotion), strongest face first,
then objects by confidence; duplicates and generic labels are dropped and the list is capped.
The list may be empty: an emotion keyword is only ever written for a face that was seen, and a
photo with neither face emotion nor object gets an honest comment about the photo itself
(``inference.text.templates``), never an invented mood.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from inference.results import DetectedObject, Face
from inference.text.labels import EMOTION_KEYWORDS, EXCLUDED_OBJECT_KEYWORDS

KEYWORD_SEPARATOR = ", "


def build_keywords(faces: Sequence[Face], objects: Sequence[DetectedObject], max_keywords: int) -> list[str]:
    """Ordered, deduplicated Korean keywords; empty when nothing usable was detected."""
    strongest_faces = sorted(faces, key=lambda face: (face.confidence, face.area), reverse=True)
    surest_objects = sorted(objects, key=lambda obj: obj.confidence, reverse=True)
    emotions = (face.keyword for face in strongest_faces)
    things = (obj.keyword for obj in surest_objects if obj.keyword not in EXCLUDED_OBJECT_KEYWORDS)
    return _unique([*emotions, *things])[:max_keywords]


def has_emotion(keywords: Iterable[str]) -> bool:
    """True when a seen face gave the keywords an emotion: the generators' comment data always has one."""
    return any(keyword in EMOTION_KEYWORDS for keyword in keywords)


def format_keywords(keywords: Iterable[str]) -> str:
    return KEYWORD_SEPARATOR.join(keywords)


def parse_keywords(text: str) -> list[str]:
    """Inverse of ``format_keywords`` (also accepts commas without spaces)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _unique(keywords: Iterable[str | None]) -> list[str]:
    seen: set[str] = set()
    ordered: list[str] = []
    for keyword in keywords:
        if keyword and keyword not in seen:
            seen.add(keyword)
            ordered.append(keyword)
    return ordered
