"""The 🔍 photo: what the bot saw, drawn on the photo — face boxes with Korean emotion labels and
object boxes with Korean names.

Pillow only (torch-free): it runs in the bot process, which fetches the photo again from the
platform when 🔍 is pressed; the boxes come from the stored comment (``detections_of``). Labels use
the shipped NanumGothic Bold (``inference/data/fonts``, SIL OFL 1.1), so no system font is needed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from inference.images import decode_image
from inference.results import Box, CommentResult, DetectedObject, Face
from inference.text.labels import korean_object_name

logger = logging.getLogger(__name__)

FONT_FILE = "NanumGothicBold.ttf"
NEUTRAL_LABEL = "무표정"
FACE_COLORS = {"기쁨": (255, 196, 0), "슬픔": (64, 140, 255), "공포": (170, 90, 255), "분노": (255, 64, 64)}
NEUTRAL_COLOR = (200, 200, 200)
OBJECT_COLOR = (0, 210, 140)
JPEG_QUALITY = 85


@dataclass(frozen=True, slots=True)
class Annotation:
    label: str  # Korean text drawn above the box
    box: Box  # original-image pixels
    color: tuple[int, int, int]


def detections_of(result: CommentResult) -> dict[str, Any]:
    """The JSON-able boxes a comment keeps for 🔍 (no pixels): faces, objects, image size."""
    return {
        "image_size": list(result.image_size),
        "faces": [_detection(f) for f in result.faces],
        "objects": [_detection(o) for o in result.objects],
    }


def _detection(item: Face | DetectedObject) -> dict[str, Any]:
    return {
        "label": item.label,
        "keyword": item.keyword,
        "confidence": round(item.confidence, 3),
        "box": [round(v, 1) for v in item.box],
    }


def annotations_for(detections: Mapping[str, Any]) -> list[Annotation]:
    """Stored detections → what to draw; objects first so that face labels end up on top."""
    drawn = []
    for item in detections.get("objects", []):
        name = item.get("keyword") or korean_object_name(item["label"]) or item["label"]
        drawn.append(Annotation(f"{name} {_percent(item)}", _box(item), OBJECT_COLOR))
    for item in detections.get("faces", []):
        keyword = item.get("keyword")
        color = FACE_COLORS.get(keyword, NEUTRAL_COLOR) if keyword else NEUTRAL_COLOR
        drawn.append(Annotation(f"{keyword or NEUTRAL_LABEL} {_percent(item)}", _box(item), color))
    return drawn


def draw_detections(photo: bytes, detections: Mapping[str, Any], *, max_side: int = 1280) -> bytes:
    """The photo (EXIF-rotated, at most ``max_side`` on its longer side) with the boxes drawn, as JPEG.

    Raises ``inference.errors.ImageError`` for a photo that cannot be decoded."""
    decoded = decode_image(photo, max_bytes=len(photo) or 1, max_side=max_side)
    image = decoded.image.copy()  # decode_image may hand back its own working copy; never draw on it
    sx, sy = decoded.scale
    draw_annotations(image, annotations_for(detections), scale=(1 / sx, 1 / sy))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def draw_annotations(
    image: Image.Image, items: Sequence[Annotation], *, scale: tuple[float, float] = (1.0, 1.0)
) -> None:
    """Draw boxes and labels in place; ``scale`` maps original pixels to this image's pixels."""
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    font = _font(max(14, side // 45))
    line = max(2, side // 400)
    for item in items:
        x1, y1, x2, y2 = (
            item.box[0] * scale[0],
            item.box[1] * scale[1],
            item.box[2] * scale[0],
            item.box[3] * scale[1],
        )
        draw.rectangle((x1, y1, x2, y2), outline=item.color, width=line)
        left, top, right, bottom = draw.textbbox((0, 0), item.label, font=font)
        width, height = right - left, bottom - top
        label_y = y1 - height - 2 * line if y1 - height - 2 * line >= 0 else y1  # inside when no room above
        label_x = min(max(0.0, x1), max(0.0, image.size[0] - width - 2 * line))
        draw.rectangle(
            (label_x, label_y, label_x + width + 2 * line, label_y + height + 2 * line), fill=item.color
        )
        draw.text((label_x + line - left, label_y + line - top), item.label, fill=(0, 0, 0), font=font)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    data = resources.files("inference").joinpath("data", "fonts", FONT_FILE).read_bytes()
    return ImageFont.truetype(io.BytesIO(data), size)


def _box(item: Mapping[str, Any]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in item["box"])
    return (x1, y1, x2, y2)


def _percent(item: Mapping[str, Any]) -> str:
    return f"{float(item.get('confidence', 0.0)) * 100:.0f}%"
