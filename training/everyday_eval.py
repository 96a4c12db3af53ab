"""Everyday photos through the bot's own pipeline: faces vs the teacher, objects vs VOC, honest comments.

Used by ``training.evaluate_detector --everyday data/everyday`` (the set ``training.label_everyday``
builds). Every VOC val photo goes through ``inference.models.pipeline.Pipeline`` exactly as the bot runs it
(decode → detector + classifier → keywords → comment, sampled), once at low thresholds; the face and
object thresholds are then swept offline over those detections (filtering by confidence after the
pipeline's per-face de-duplication gives the same boxes as running at that threshold), and the
comments are judged at the thresholds the weights ship with.

Definitions (all in ``everyday.json``):

- *teacher faces*: MTCNN boxes from ``teacher/val.jsonl``; a face counts for recall when the teacher's
  p ≥ 0.97 and its size (√(w·h)) ≥ 24 px. A teacher face is *found* when a predicted face overlaps
  it with IoU ≥ 0.4 (one-to-one, most confident first).
- *false face*: a predicted face that overlaps no teacher box of p ≥ 0.5 (any size) with IoU ≥ 0.3;
  reported per 100 photos.
- *large boxes*: predicted faces covering over 40% of the photo, and those among them that no
  equally large teacher face explains.
- *face-free photos with a face*: no-face photos (below) with any predicted face.
- *object keywords*: per photo, the Korean keywords of the detected objects vs the VOC labels'
  (``person`` never counts). Precision: a predicted keyword is right when its class is labelled in
  the photo at all; recall: over the labelled objects that cover ≥ 2% of the photo.
- *no-face photos*: no teacher face of p ≥ 0.9 and no VOC ``person``: the share with an emotion
  keyword, and the share whose comment claims an expression or mood (``inference.text.templates``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw

from inference.results import Box, CommentResult, box_area
from inference.results import box_iou as iou
from inference.text.keywords import has_emotion
from inference.text.labels import object_keyword
from inference.text.templates import claims_mood

logger = logging.getLogger(__name__)

RECALL_MIN_PROB = 0.97
RECALL_MIN_SIZE = 24.0
FOUND_IOU = 0.4
FALSE_FACE_IOU = 0.3
FALSE_FACE_TEACHER_PROB = 0.5
NO_FACE_TEACHER_PROB = 0.9
LARGE_BOX_SHARE = 0.4
OBJECT_MIN_SHARE = 0.02
FACE_CONF_GRID = (
    0.02,
    0.03,
    0.04,
    0.05,
    0.08,
    0.1,
    0.12,
    0.15,
    0.18,
    0.2,
    0.22,
    0.25,
    0.28,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.6,
)
OBJECT_CONF_GRID = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
SWEEP_CONF = 0.02  # the low threshold of the single pipeline pass the sweeps filter
CONTACT_SHEET_PHOTOS = 24
PERSON = "person"


@dataclass(slots=True)
class EverydayPhoto:
    """One VOC val photo with the teacher's faces and the VOC object labels (pixels of the file)."""

    path: Path
    size: tuple[int, int]
    teacher: list[tuple[Box, float]]
    objects: list[tuple[str, Box]]
    result: CommentResult | None = None
    comment: str = ""
    keywords: list[str] = field(default_factory=list)

    @property
    def area(self) -> float:
        return float(self.size[0] * self.size[1])

    def has_person(self) -> bool:
        return any(name == PERSON for name, _ in self.objects)

    def without_face(self) -> bool:
        return not self.has_person() and not any(p >= NO_FACE_TEACHER_PROB for _, p in self.teacher)


def face_size(box: Box) -> float:
    return math.sqrt(box_area(box))


# --- data ------------------------------------------------------------------------------------------
def load_photos(everyday: Path, objects_root: Path, split: str = "val") -> list[EverydayPhoto]:
    """The split's VOC photos (``voc_*``) with teacher faces and VOC labels."""
    names_raw = yaml.safe_load((objects_root / "data.yaml").read_text(encoding="utf-8"))["names"]
    names = [names_raw[k] for k in sorted(names_raw)] if isinstance(names_raw, dict) else list(names_raw)
    photos = []
    for line in (everyday / "teacher" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        width, height = record["size"]
        stem = record["image"].removeprefix("voc_").rsplit(".", 1)[0]
        teacher = [(_box(face["box"]), float(face["prob"])) for face in record["faces"]]
        photos.append(
            EverydayPhoto(
                path=objects_root / "images" / split / f"{stem}.jpg",
                size=(width, height),
                teacher=teacher,
                objects=read_yolo_labels(
                    objects_root / "labels" / split / f"{stem}.txt", names, width, height
                ),
            )
        )
    return photos


def _box(values: Sequence[float]) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def read_yolo_labels(label: Path, names: Sequence[str], width: int, height: int) -> list[tuple[str, Box]]:
    """(class name, box in pixels) per line of a YOLO label file (none when the file is missing)."""
    found = []
    for line in label.read_text(encoding="utf-8").splitlines() if label.is_file() else []:
        parts = line.split()
        if len(parts) == 5:
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            found.append((names[cls], box))
    return found


# --- faces -----------------------------------------------------------------------------------------
def face_metrics(photos: Sequence[EverydayPhoto], conf: float) -> dict[str, Any]:
    """Recall against the teacher, false faces per 100 photos and large boxes at threshold ``conf``."""
    wanted = found = false_faces = large = large_unexplained = face_free_with_face = 0
    for photo in photos:
        assert photo.result is not None
        predicted = sorted(
            (f for f in photo.result.faces if f.confidence >= conf), key=lambda f: f.confidence, reverse=True
        )
        face_free_with_face += bool(predicted) and photo.without_face()
        targets = [
            box for box, p in photo.teacher if p >= RECALL_MIN_PROB and face_size(box) >= RECALL_MIN_SIZE
        ]
        wanted += len(targets)
        found += _matched(targets, [f.box for f in predicted], FOUND_IOU)
        known = [box for box, p in photo.teacher if p >= FALSE_FACE_TEACHER_PROB]
        for face in predicted:
            if not any(iou(face.box, box) >= FALSE_FACE_IOU for box in known):
                false_faces += 1
            if box_area(face.box) > LARGE_BOX_SHARE * photo.area:
                large += 1
                explained = any(
                    box_area(box) > LARGE_BOX_SHARE * photo.area / 2 and iou(face.box, box) >= FALSE_FACE_IOU
                    for box in known
                )
                large_unexplained += not explained
    return {
        "conf": conf,
        "teacher_faces": wanted,
        "recall": round(found / max(1, wanted), 4),
        "false_faces_per_100_photos": round(100 * false_faces / max(1, len(photos)), 2),
        "boxes_over_40pct": large,
        "boxes_over_40pct_without_such_a_face": large_unexplained,
        "face_free_photos_with_a_face": face_free_with_face,
    }


def _matched(targets: Sequence[Box], predicted: Sequence[Box], threshold: float) -> int:
    """Greedy one-to-one matches of ``predicted`` (most confident first) to ``targets``."""
    free = list(targets)
    count = 0
    for box in predicted:
        best = max(free, key=lambda t: iou(box, t), default=None)
        if best is not None and iou(box, best) >= threshold:
            free.remove(best)
            count += 1
    return count


# --- objects ---------------------------------------------------------------------------------------
def object_metrics(
    photos: Sequence[EverydayPhoto], conf: float, groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """Keyword precision / recall of the detected objects against the VOC labels at ``conf``. A group
    keyword (``groups``: the detector's ``object_groups``, e.g. 반려동물 for dog and cat) is right where
    any member is labelled and finds the labelled members; ``keyword_recall_2pct_by_name`` counts only
    the keywords that name the class itself."""
    members = {
        group: _keywords(names) for name, names in (groups or {}).items() if (group := object_keyword(name))
    }
    predicted_total = predicted_right = wanted_total = wanted_found = found_by_name = grouped = 0
    for photo in photos:
        assert photo.result is not None
        present = _keywords(name for name, _ in photo.objects)
        present |= {group for group, names in members.items() if names & present}
        wanted = _keywords(
            name for name, box in photo.objects if box_area(box) >= OBJECT_MIN_SHARE * photo.area
        )
        # a group's box keeps its member's confidence: its own rule (conf, check) already judged it
        predicted = _keywords(
            o.label
            for o in photo.result.objects
            if o.confidence >= conf or object_keyword(o.label) in members
        )
        named_by_group = {name for group in predicted & members.keys() for name in members[group]}
        predicted_total += len(predicted)
        predicted_right += len(predicted & present)
        grouped += len(predicted & members.keys())
        wanted_total += len(wanted)
        wanted_found += len(wanted & (predicted | named_by_group))
        found_by_name += len(wanted & predicted)
    return {
        "conf": conf,
        "keyword_precision": round(predicted_right / max(1, predicted_total), 4),
        "keyword_recall_2pct": round(wanted_found / max(1, wanted_total), 4),
        "keyword_recall_2pct_by_name": round(found_by_name / max(1, wanted_total), 4),
        "keywords_predicted": predicted_total,
        "group_keywords_predicted": grouped,
        "keywords_labelled_2pct": wanted_total,
    }


def _keywords(labels: Iterable[str]) -> set[str]:
    return {keyword for label in labels if (keyword := object_keyword(label)) is not None}


def pick_object_conf(table: Sequence[dict[str, Any]], min_precision: float = 0.85) -> float:
    """The lowest threshold whose keyword precision reaches ``min_precision`` (most recall at it)."""
    good = [row["conf"] for row in table if row["keyword_precision"] >= min_precision]
    return float(min(good)) if good else float(max(row["conf"] for row in table))


def pick_face_conf(table: Sequence[dict[str, Any]], max_false_per_100: float = 3.0) -> float:
    """The lowest threshold (most recall) with at most ``max_false_per_100`` false faces, no face box over
    40% of a photo where no face is that large, and no face at all on a photo without one: a giant box or
    a mood read into a dog photo is the worst false face a user sees. When no threshold of the table has
    that last property, the fewest such photos is the rule."""
    safe = [
        row
        for row in table
        if row["false_faces_per_100_photos"] <= max_false_per_100
        and row.get("boxes_over_40pct_without_such_a_face", 0) == 0
    ]
    if not safe:
        return float(max(row["conf"] for row in table))
    fewest = min(row.get("face_free_photos_with_a_face", 0) for row in safe)
    return float(min(row["conf"] for row in safe if row.get("face_free_photos_with_a_face", 0) == fewest))


# --- comments --------------------------------------------------------------------------------------
def honesty_metrics(photos: Sequence[EverydayPhoto]) -> dict[str, Any]:
    """For photos without a face: emotion keywords and comments that claim a mood (shipped thresholds)."""
    no_face = [p for p in photos if p.without_face()]
    with_emotion = sum(has_emotion(p.keywords) for p in no_face)
    mood = [p for p in no_face if claims_mood(p.comment)]
    return {
        "photos_without_face": len(no_face),
        "emotion_keyword_share": round(with_emotion / max(1, len(no_face)), 4),
        "mood_claim_share": round(len(mood) / max(1, len(no_face)), 4),
        "mood_claim_examples": [p.comment for p in mood[:5]],
        "examples": [{"keywords": p.keywords, "comment": p.comment} for p in no_face[:8]],
    }


# --- contact sheet ---------------------------------------------------------------------------------
def contact_sheet(photos: Sequence[EverydayPhoto], out: Path, face_conf: float, object_conf: float) -> Path:
    """A grid of photos with predicted faces (red, emotion) and objects (blue), teacher faces in green."""
    chosen = random.Random(0).sample(list(photos), min(CONTACT_SHEET_PHOTOS, len(photos)))
    cell, columns = 256, 6
    rows = math.ceil(len(chosen) / columns)
    sheet = Image.new("RGB", (columns * cell, rows * cell), "white")
    for index, photo in enumerate(chosen):
        assert photo.result is not None
        with Image.open(photo.path) as opened:
            image = opened.convert("RGB")
        draw = ImageDraw.Draw(image)
        for box, p in photo.teacher:
            if p >= RECALL_MIN_PROB:
                draw.rectangle(box, outline=(0, 200, 0), width=1)
        for face in photo.result.faces:
            if face.confidence >= face_conf:
                draw.rectangle(face.box, outline=(230, 0, 0), width=2)
                draw.text((face.box[0] + 2, face.box[1] + 1), face.label, fill=(230, 0, 0))
        for thing in photo.result.objects:
            if thing.confidence >= object_conf:
                draw.rectangle(thing.box, outline=(0, 80, 230), width=2)
                draw.text((thing.box[0] + 2, thing.box[3] - 11), thing.label, fill=(0, 80, 230))
        image.thumbnail((cell - 4, cell - 4))
        sheet.paste(image, ((index % columns) * cell + 2, (index // columns) * cell + 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
