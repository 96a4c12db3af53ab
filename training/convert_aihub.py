"""Convert AI-Hub face-emotion annotation JSON (한국인 감정인식을 위한 복합 영상) to a YOLO detection set.

Example::

    python -m training.convert_aihub --labels aihub/labels --images aihub/images --out data/aihub_yolo \\
        --annot A --map 중립=neutral --val-fraction 0.1 --seed 0

Each record (``filename``, ``faceExp_uploader``, ``annot_A/B/C.boxes`` with minX/minY/maxX/maxY in
pixels) becomes one box in ``labels/<split>/<stem>.txt``. Boxes are normalised by the image's
*displayed* size: EXIF orientation is applied, because many of the phone photos are stored rotated.
The AI-Hub boxes were drawn on the displayed photo; ``--boxes stored`` handles annotations made on
the raw pixel grid instead (they are rotated along with the photo). Expressions outside the mapping
are skipped and counted — never guessed — and so are records whose image is missing.

Files are read as UTF-8 and, failing that, as cp949 (the encoding AI-Hub distributes).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

DEFAULT_MAPPING: dict[str, str] = {"기쁨": "happy", "분노": "anger", "슬픔": "sad", "당황": "panic"}
BASE_CLASSES = ("anger", "sad", "panic", "happy")  # the research project's class order
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
ANNOTATORS = ("A", "B", "C")

# EXIF orientation → where a stored pixel (x, y) lands in the displayed image of a (w, h) photo.
_ORIENT = {
    1: lambda x, y, w, h: (x, y),
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x),
    8: lambda x, y, w, h: (y, w - x),
}

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class YoloBox:
    class_id: int
    cx: float
    cy: float
    w: float
    h: float

    def line(self) -> str:
        return f"{self.class_id} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"


@dataclass
class Summary:
    """Counts of what was converted and of everything skipped, per reason."""

    classes: list[str]
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, dict[str, int]] = field(default_factory=dict)
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    unmapped_expressions: Counter[str] = field(default_factory=Counter)
    rotated_images: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "records": self.records,
            "images": self.images,
            "boxes": self.boxes,
            "skipped": dict(self.skipped),
            "unmapped_expressions": dict(self.unmapped_expressions),
            "rotated_images": self.rotated_images,
        }


# --- reading ---------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """UTF-8 (with or without BOM) first, then cp949 as AI-Hub distributes it."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return json.loads(raw.decode(encoding))
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path}: neither UTF-8 nor cp949")


def iter_records(label_paths: Iterable[Path], summary: Summary) -> Iterator[dict[str, Any]]:
    """Records from files holding a list of records, one record, or ``{"data": [...]}``."""
    for path in label_paths:
        try:
            data = read_json(path)
        except (ValueError, OSError) as exc:
            logger.warning("unreadable label file %s: %s", path, exc)
            summary.skipped["unreadable_label_file"] += 1
            continue
        if isinstance(data, dict):
            data = data.get("data", [data]) if "filename" not in data else [data]
        for record in data if isinstance(data, list) else []:
            if isinstance(record, dict):
                yield record
            else:
                summary.skipped["not_a_record"] += 1


def label_files(labels: Path) -> list[Path]:
    return [labels] if labels.is_file() else sorted(labels.rglob("*.json"))


def index_images(images: Path) -> dict[str, Path]:
    """File name → path; AI-Hub spreads photos over per-emotion sub-folders."""
    index: dict[str, Path] = {}
    for path in sorted(images.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            index.setdefault(path.name, path)
    return index


# --- geometry --------------------------------------------------------------------------------------
def record_box(record: Mapping[str, Any], annot: str) -> Box | None:
    """x1, y1, x2, y2 from one annotator or the mean of all annotators that have a box."""
    names = ANNOTATORS if annot == "mean" else (annot,)
    boxes = []
    for name in names:
        raw = (record.get(f"annot_{name}") or {}).get("boxes") or {}
        try:
            boxes.append(tuple(float(raw[k]) for k in ("minX", "minY", "maxX", "maxY")))
        except (KeyError, TypeError, ValueError):
            continue
    if not boxes or (annot != "mean" and len(boxes) != 1):
        return None
    x1, y1, x2, y2 = (sum(b[i] for b in boxes) / len(boxes) for i in range(4))
    return x1, y1, x2, y2


def image_geometry(path: Path) -> tuple[int, int, int]:
    """Stored width, stored height and EXIF orientation (1 when absent or invalid)."""
    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1)
        width, height = image.size
    return width, height, orientation if orientation in _ORIENT else 1


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)


def stored_to_displayed(box: Box, width: int, height: int, orientation: int) -> Box:
    """Rotate/flip a box drawn on the stored pixel grid into displayed coordinates."""
    transform = _ORIENT[orientation]
    xa, ya = transform(box[0], box[1], width, height)
    xb, yb = transform(box[2], box[3], width, height)
    return min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)


def to_yolo(box: Box, class_id: int, width: int, height: int) -> YoloBox | None:
    """Clip to the image and normalise; None for a box with no area inside the image."""
    x1, y1 = max(0.0, min(box[0], box[2])), max(0.0, min(box[1], box[3]))
    x2, y2 = min(float(width), max(box[0], box[2])), min(float(height), max(box[1], box[3]))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return YoloBox(
        class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    )


# --- conversion ------------------------------------------------------------------------------------
def class_names(mapping: Mapping[str, str]) -> list[str]:
    """anger, sad, panic, happy, then neutral and any other mapped class in first-seen order."""
    names = list(BASE_CLASSES)
    for target in mapping.values():
        if target and target not in names:
            names.append(target)
    return names


def collect(
    records: Iterable[Mapping[str, Any]],
    images: Mapping[str, Path],
    mapping: Mapping[str, str],
    names: Sequence[str],
    annot: str,
    boxes_in: str,
    summary: Summary,
) -> dict[str, list[YoloBox]]:
    """Image path → its YOLO boxes; every record that can't be converted is counted by reason."""
    labels: dict[str, list[YoloBox]] = defaultdict(list)
    geometry: dict[Path, tuple[int, int, int]] = {}
    for record in records:
        summary.records += 1
        expression = str(record.get("faceExp_uploader", "")).strip()
        target = mapping.get(expression)
        if not target:
            summary.skipped["unmapped_expression"] += 1
            summary.unmapped_expressions[expression or "(없음)"] += 1
            continue
        path = images.get(Path(str(record.get("filename", ""))).name)
        if path is None:
            summary.skipped["missing_image"] += 1
            continue
        box = record_box(record, annot)
        if box is None:
            summary.skipped["missing_box"] += 1
            continue
        if path not in geometry:
            try:
                geometry[path] = image_geometry(path)
            except (OSError, UnidentifiedImageError) as exc:
                logger.warning("unreadable image %s: %s", path, exc)
                summary.skipped["unreadable_image"] += 1
                continue
            summary.rotated_images += geometry[path][2] != 1
        width, height, orientation = geometry[path]
        if boxes_in == "stored":
            box = stored_to_displayed(box, width, height, orientation)
        yolo = to_yolo(box, names.index(target), *displayed_size(width, height, orientation))
        if yolo is None:
            summary.skipped["box_outside_image"] += 1
            continue
        labels[str(path)].append(yolo)
    return labels


def split(labels: Mapping[str, list[YoloBox]], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Stratified by each image's first class so rare emotions reach the val split too."""
    by_class: dict[int, list[str]] = defaultdict(list)
    for path, boxes in sorted(labels.items()):
        by_class[boxes[0].class_id].append(path)
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {"train": [], "val": []}
    for class_id in sorted(by_class):
        paths = by_class[class_id]
        rng.shuffle(paths)
        n_val = round(len(paths) * val_fraction)
        parts["val"] += paths[:n_val]
        parts["train"] += paths[n_val:]
    return parts


def write_dataset(
    out: Path,
    labels: Mapping[str, list[YoloBox]],
    parts: Mapping[str, list[str]],
    names: Sequence[str],
    copy: bool,
    summary: Summary,
) -> Path:
    """images/<split>/ (symlinks or copies), labels/<split>/*.txt, data.yaml, summary.json."""
    for split_name, paths in parts.items():
        image_dir, label_dir = out / "images" / split_name, out / "labels" / split_name
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        counts: Counter[str] = Counter()
        for source in paths:
            source_path = Path(source)
            target = image_dir / source_path.name
            if target.is_symlink() or target.exists():
                target.unlink()
            if copy:
                shutil.copy2(source_path, target)
            else:
                target.symlink_to(source_path.resolve())
            boxes = labels[source]
            (label_dir / f"{source_path.stem}.txt").write_text(
                "".join(b.line() + "\n" for b in boxes), encoding="utf-8"
            )
            counts.update(names[b.class_id] for b in boxes)
        summary.images[split_name] = len(paths)
        summary.boxes[split_name] = {name: counts[name] for name in names}
    data_yaml = out / "data.yaml"
    names_json = json.dumps(list(names), ensure_ascii=False)
    data_yaml.write_text(
        "# AI-Hub 한국인 감정인식을 위한 복합 영상, converted by training/convert_aihub.py\n"
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\n"
        f"nc: {len(names)}\nnames: {names_json}\n",
        encoding="utf-8",
    )
    (out / "summary.json").write_text(
        json.dumps(summary.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return data_yaml


def convert(
    labels_dir: Path,
    images_dir: Path,
    out: Path,
    *,
    annot: str = "A",
    mapping: Mapping[str, str] = DEFAULT_MAPPING,
    val_fraction: float = 0.1,
    seed: int = 0,
    boxes_in: str = "displayed",
    copy: bool = False,
) -> Summary:
    names = class_names(mapping)
    summary = Summary(classes=names)
    records = iter_records(label_files(labels_dir), summary)
    labels = collect(records, index_images(images_dir), mapping, names, annot, boxes_in, summary)
    parts = split(labels, val_fraction, seed)
    write_dataset(out, labels, parts, names, copy, summary)
    logger.info("converted %d records into %s: %s", summary.records, out, summary.to_json())
    return summary


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """Defaults plus ``표정=class`` overrides; ``표정=`` (empty) drops an expression."""
    mapping = dict(DEFAULT_MAPPING)
    for pair in pairs:
        expression, sep, target = pair.partition("=")
        if not sep or not expression.strip():
            raise argparse.ArgumentTypeError(f"--map wants 표정=class, got {pair!r}")
        mapping[expression.strip()] = target.strip()
    return mapping


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labels", type=Path, required=True, help="a label JSON file or a folder of them")
    parser.add_argument(
        "--images", type=Path, required=True, help="folder with the photos (searched recursively)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output YOLO dataset folder")
    parser.add_argument("--annot", choices=[*ANNOTATORS, "mean"], default="A", help="whose box to use")
    parser.add_argument(
        "--map", nargs="*", default=[], metavar="표정=CLASS", help="e.g. 중립=neutral 불안=panic"
    )
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--boxes",
        choices=["displayed", "stored"],
        default="displayed",
        help="the pixel grid the boxes were drawn on (see module doc)",
    )
    parser.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    args = parser.parse_args(argv)
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error("--val-fraction must be in [0, 1)")
    try:
        args.mapping = parse_mapping(args.map)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    summary = convert(
        args.labels,
        args.images,
        args.out,
        annot=args.annot,
        mapping=args.mapping,
        val_fraction=args.val_fraction,
        seed=args.seed,
        boxes_in=args.boxes,
        copy=args.copy,
    )
    print(json.dumps(summary.to_json(), ensure_ascii=False, indent=2))
    print(f"data.yaml: {args.out / 'data.yaml'}")


if __name__ == "__main__":
    main()
