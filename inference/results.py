"""Typed results of the pipeline. Plain dataclasses (no torch) so they pickle across processes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels (after EXIF)


def box_area(box: Box) -> float:
    """Area in square pixels; 0 for a degenerate box."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_intersection(a: Box, b: Box) -> float:
    """Area the two boxes share, in square pixels."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter_w * inter_h


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union; 0 when both boxes are degenerate."""
    inter = box_intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Face:
    label: str  # class name from the weights, e.g. "happy"
    keyword: str | None  # Korean emotion keyword, e.g. "기쁨"; None for neutral
    confidence: float
    box: Box

    @property
    def area(self) -> float:
        return box_area(self.box)


@dataclass(frozen=True, slots=True)
class DetectedObject:
    label: str  # class name from the weights, e.g. "Glasses"
    keyword: str | None  # Korean keyword, None when excluded (generic labels such as 남자)
    confidence: float
    box: Box


@dataclass(frozen=True, slots=True)
class CommentResult:
    comment: str
    keywords: list[str]
    faces: list[Face]
    objects: list[DetectedObject]
    generator: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)  # width, height after EXIF rotation
    # True when a template wrote the comment: no face emotion to write from, or the post-check failed twice
    fallback: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for item in (*data["faces"], *data["objects"]):
            item["box"] = [round(v, 1) for v in item["box"]]
            item["confidence"] = round(item["confidence"], 4)
        data["timings_ms"] = {k: round(v, 2) for k, v in self.timings_ms.items()}
        return data
