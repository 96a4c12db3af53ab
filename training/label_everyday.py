"""Build the joint everyday-photo detection set: teacher-labelled faces + VOC objects + close-up faces.

The shared VOC 2007 photos (``../shared/data/objects``) show about 2,000 people whose faces carry no
labels. A teacher labels them: facenet-pytorch's MTCNN (its P/R/O-Net weights ship inside the PyPI
wheel; a training-time tool only, never loaded by the bot) finds the faces, and the project's own
face-crop classifier (``weights/emotion/face_classifier.pt``) gives each one an emotion. VOC photos
without people keep no face at all: they are the hard negatives. The close-up faces set
(``../shared/data/faces``) joins with its own emotion labels.

Output (``--out``, e.g. ``data/everyday``), a YOLO set with classes ``anger, sad, panic, happy,
neutral`` then the VOC objects without ``person`` (a person never becomes a keyword)::

    images/{train,val}/{voc,faces}_<name>.jpg   symlinks to the shared files (nothing is copied)
    labels/{train,val}/{voc,faces}_<name>.txt
    teacher/{train,val}.jsonl                   every MTCNN box with its probability, for evaluation
    data.yaml
    closeups.yaml                               the close-up set alone under the joint class list
                                                (``training.evaluate_detector --data`` for the joint model)

Example::

    pip install --no-deps facenet-pytorch==2.6.0   # the `train` extra's teacher; see weights/README.md
    python -m training.label_everyday --objects ../shared/data/objects --faces ../shared/data/faces \
        --out data/everyday
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from inference.models.runtime import set_torch_threads
from inference.settings import REPO_ROOT
from inference.text.labels import EMOTION_CLASSES
from training.convert_aihub import to_yolo

logger = logging.getLogger(__name__)

SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_CLASSIFIER = REPO_ROOT / "weights" / "emotion" / "face_classifier.pt"
SPLITS = ("train", "val")
VOC_PERSON = "person"
# Teacher faces kept as training labels. MTCNN's own defaults find faces from 20 px; 12 px still
# gives usable boxes on these ≤352-px photos, and p ≥ 0.95 keeps hands and textures out.
LABEL_MIN_PROB = 0.95
LABEL_MIN_SIDE = 10.0
TEACHER_MIN_FACE = 12


@dataclass(frozen=True, slots=True)
class TeacherFace:
    box: tuple[float, float, float, float]
    prob: float

    @property
    def side(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=Path, default=SHARED / "objects", help="VOC set (YOLO format)")
    parser.add_argument("--faces", type=Path, default=SHARED / "faces", help="close-up face-emotion set")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "everyday")
    parser.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    parser.add_argument("--min-prob", type=float, default=LABEL_MIN_PROB, help="teacher p for a label")
    parser.add_argument("--min-side", type=float, default=LABEL_MIN_SIDE, help="smallest labelled face, px")
    parser.add_argument("--limit", type=int, default=0, help="first N photos per split (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def class_names(voc_names: Sequence[str]) -> list[str]:
    """Emotions first (the shipped detector's ids stay valid), then the VOC objects but ``person``."""
    return [*EMOTION_CLASSES, *(name for name in voc_names if name != VOC_PERSON)]


def read_names(data_yaml: Path) -> list[str]:
    names = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))["names"]
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)


def remap_voc_labels(label_file: Path, voc_names: Sequence[str], names: Sequence[str]) -> list[str]:
    """VOC label lines with class ids of the joint set; ``person`` boxes are dropped."""
    index = {name: i for i, name in enumerate(names)}
    lines: list[str] = []
    if not label_file.is_file():
        return lines
    for row in label_file.read_text(encoding="utf-8").split("\n"):
        parts = row.split()
        if len(parts) != 5:
            continue
        name = voc_names[int(parts[0])]
        if name != VOC_PERSON:
            lines.append(" ".join([str(index[name]), *parts[1:]]))
    return lines


class Teacher:
    """MTCNN faces and the face-crop classifier's emotion for each."""

    def __init__(self, classifier: Path) -> None:
        from facenet_pytorch import MTCNN  # the `train` extra's teacher, never a runtime dependency

        from inference.models.face_classifier import FaceEmotionClassifier

        self.mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=TEACHER_MIN_FACE, post_process=False)
        self.classifier = FaceEmotionClassifier.load(classifier)

    def faces(self, image: Image.Image) -> list[TeacherFace]:
        boxes, probs = self.mtcnn.detect(image)
        if boxes is None:
            return []
        return [
            TeacherFace(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), prob=float(p))
            for b, p in zip(boxes, probs, strict=True)
        ]

    def emotions(self, image: Image.Image, faces: Sequence[TeacherFace]) -> list[str]:
        crops = [self.classifier.crop(image, face.box) for face in faces]
        return [label for label, _ in self.classifier.classify(crops)]


def _images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return files[:limit] if limit else files


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source.resolve())


def label_voc_split(
    args: argparse.Namespace, split: str, teacher: Teacher, voc_names: list[str], names: list[str]
) -> Iterator[dict[str, Any]]:
    """Write the split's VOC images and labels; yields one teacher record per photo."""
    face_index = {name: i for i, name in enumerate(names)}
    for path in _images(args.objects / "images" / split, args.limit):
        stem = f"voc_{path.stem}"
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        faces = teacher.faces(image)
        kept = [f for f in faces if f.prob >= args.min_prob and f.side >= args.min_side]
        emotions = teacher.emotions(image, kept) if kept else []
        boxes = [
            to_yolo(face.box, face_index[emotion], image.width, image.height)
            for face, emotion in zip(kept, emotions, strict=True)
        ]
        lines = [box.line() for box in boxes if box is not None]
        lines += remap_voc_labels(args.objects / "labels" / split / f"{path.stem}.txt", voc_names, names)
        _link(path, args.out / "images" / split / f"{stem}.jpg")
        label = args.out / "labels" / split / f"{stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        yield {
            "image": f"{stem}.jpg",
            "size": [image.width, image.height],
            "faces": [{"box": [round(v, 1) for v in f.box], "prob": round(f.prob, 4)} for f in faces],
            "emotions": emotions,
        }


def link_faces_split(args: argparse.Namespace, split: str) -> int:
    """The close-up set joins as it is: its class ids are the joint set's emotion ids."""
    count = 0
    for path in _images(args.faces / "images" / split, args.limit):
        stem = f"faces_{path.stem}"
        _link(path, args.out / "images" / split / f"{stem}{path.suffix.lower()}")
        source = args.faces / "labels" / split / f"{path.stem}.txt"
        text = source.read_text(encoding="utf-8") if source.is_file() else ""
        (args.out / "labels" / split).mkdir(parents=True, exist_ok=True)
        (args.out / "labels" / split / f"{stem}.txt").write_text(text, encoding="utf-8")
        count += 1
    return count


def write_data_yaml(out: Path, names: list[str], counts: dict[str, Any]) -> Path:
    path = out / "data.yaml"
    header = (
        "# Joint everyday-photo set: PASCAL VOC 2007 (Flickr terms of use) with MTCNN-teacher face boxes\n"
        "# labelled by the project's face-crop classifier, plus the shared close-up faces set (CC BY 4.0).\n"
        f"# Built by training.label_everyday: {json.dumps(counts)}\n"
    )
    body = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "names": names}
    path.write_text(header + yaml.safe_dump(body, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_closeups_yaml(out: Path, faces: Path, names: list[str]) -> Path:
    """The close-up faces set under the joint class list: its ids 0-4 already are the joint ids."""
    path = out / "closeups.yaml"
    body = {"path": str(faces.resolve()), "train": "images/train", "val": "images/val", "names": names}
    path.write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    set_torch_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    voc_names = read_names(args.objects / "data.yaml")
    names = class_names(voc_names)
    teacher = Teacher(args.classifier)
    counts: dict[str, Any] = {}
    for split in SPLITS:
        started = time.monotonic()
        teacher_file = args.out / "teacher" / f"{split}.jsonl"
        teacher_file.parent.mkdir(parents=True, exist_ok=True)
        photos = labelled = 0
        with teacher_file.open("w", encoding="utf-8") as handle:
            for record in label_voc_split(args, split, teacher, voc_names, names):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                photos += 1
                labelled += len(record["emotions"])
                if photos % 250 == 0:
                    logger.info("%s: %d photos, %d faces labelled", split, photos, labelled)
        closeups = link_faces_split(args, split)
        counts[split] = {"voc_photos": photos, "voc_faces": labelled, "closeup_photos": closeups}
        logger.info("%s done in %.1f min: %s", split, (time.monotonic() - started) / 60, counts[split])
    logger.info("wrote %s", write_data_yaml(args.out, names, counts))
    logger.info("wrote %s", write_closeups_yaml(args.out, args.faces, names))


if __name__ == "__main__":
    main()
