"""Train the face check (``inference.models.face_classifier.FaceCheck``): is a detected face box a face?

Example::

    python -m training.train_face_check --weights weights/emotion/model.pt --everyday data/everyday \\
        --objects ../shared/data/objects --out weights/emotion/face_check.pt --threads 2

Data, all from the *train* split of the everyday set (``training.label_everyday``); val stays the test:

- *candidates*: every face box the detector finds at ``--mine-conf`` on the train photos, after the
  pipeline's one-box-per-face. On VOC photos a candidate is a face when it overlaps an MTCNN teacher
  face of p ≥ 0.9 with IoU ≥ 0.4, and not a face when it overlaps no teacher box of p ≥ 0.5 with
  IoU ≥ 0.3 (the definitions ``training.everyday_eval`` scores with); anything between is left out. On
  close-up photos a candidate matching a labelled face is a face; the rest are left out (close-up
  labels miss background faces).
- the teacher's faces (p ≥ 0.9) and the close-ups' labelled faces themselves, as faces;
- random windows of VOC photos with neither a person nor a teacher face, as non-faces;
- windows on the animals of the VOC labels (a cat's or a dog's face is the false face the detector
  makes most on val photos), away from people and teacher faces, as non-faces.

A held-out tenth of the photos picks the epoch (loss on its detector candidates) and the threshold:
the highest p(face) that still keeps ``--keep`` of its candidates that are faces. The detector
candidates are mined once and cached (``--cache``), so a second run only trains.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from PIL import Image, ImageOps

from inference.models.face_classifier import (
    FACE_CLASS,
    ClassifierConfig,
    CropNetwork,
    EmotionCNN,
    crop_face,
    mirrored_logits,
    save_checkpoint,
    to_tensor,
)
from inference.models.runtime import prepare_offline_ultralytics, set_torch_threads
from inference.results import Box, box_intersection
from inference.results import box_iou as iou
from inference.settings import REPO_ROOT
from inference.text.labels import is_known_emotion
from training import everyday_eval as ev
from training.data import file_sha256
from training.train_face_classifier import dataset_names, one_cycle_adamw, run_epoch

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

logger = logging.getLogger(__name__)

SHARED = REPO_ROOT.parent / "shared" / "data"
FACE_TEACHER_PROB = 0.9
FACE, OTHER = 1, 0
ANIMALS = frozenset({"bird", "cat", "cow", "dog", "horse", "sheep"})
UNKNOWN = -1
Crops = TypeVar("Crops", bound="DataclassInstance")  # one photo's mined crops (each script's PhotoCrops)


def crop_check_parser(
    doc: str, *, out: str, mine_conf: float, size: int, margin: float, epochs: int
) -> argparse.ArgumentParser:
    """The options both crop checks (this face check, ``training.train_object_check``) share: detector,
    data, cache, crop and optimiser; each script adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=REPO_ROOT / "weights" / "emotion" / "model.pt")
    parser.add_argument("--everyday", type=Path, default=REPO_ROOT / "data" / "everyday")
    parser.add_argument("--objects", type=Path, default=SHARED / "objects", help="VOC set (its labels)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "weights" / "emotion" / out)
    parser.add_argument("--cache", type=Path, default=None, help="mined crops (default: beside --everyday)")
    parser.add_argument("--imgsz", type=int, default=352, help="the detector's shipped imgsz")
    parser.add_argument("--mine-conf", type=float, default=mine_conf)
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--margin", type=float, default=margin)
    parser.add_argument("--widths", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = one per core")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = crop_check_parser(__doc__, out="face_check.pt", mine_conf=0.03, size=32, margin=0.2, epochs=14)
    parser.add_argument("--windows", type=int, default=3, help="random non-face windows per face-free photo")
    parser.add_argument("--animal-windows", type=int, default=4, help="non-face windows per labelled animal")
    parser.add_argument("--keep", type=float, default=0.98, help="share of held-out true faces kept")
    return parser.parse_args(argv)


@dataclass(slots=True)
class PhotoCrops:
    """One train photo's crops: uint8 (N, 3, S, S), labels (FACE / OTHER) and which came from the detector."""

    name: str
    crops: torch.Tensor
    labels: torch.Tensor
    candidate: torch.Tensor


# --- mining ----------------------------------------------------------------------------------------
def label_candidate(box: Box, faces: Sequence[Box], known: Sequence[Box]) -> int:
    """FACE / OTHER / UNKNOWN for one detector box, by the evaluation's own overlap rules."""
    if any(iou(box, face) >= ev.FOUND_IOU for face in faces):
        return FACE
    if not any(iou(box, other) >= ev.FALSE_FACE_IOU for other in known):
        return OTHER
    return UNKNOWN


def random_windows(size: tuple[int, int], count: int, rng: random.Random) -> list[Box]:
    """Square windows of 16–120 px (the sizes of everyday faces) anywhere in the photo."""
    width, height = size
    windows = []
    for _ in range(count):
        side = min(rng.uniform(16, 120), width, height)
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        windows.append((x, y, x + side, y + side))
    return windows


def animal_windows(animals: Sequence[Box], avoid: Sequence[Box], count: int, rng: random.Random) -> list[Box]:
    """Squares of 25–70% of each animal box's shorter side, mostly in its upper half (where its head
    usually is), none touching a box in ``avoid`` (people, teacher faces)."""
    windows = []
    for x1, y1, x2, y2 in animals:
        short = min(x2 - x1, y2 - y1)
        for _ in range(count):
            side = max(8.0, rng.uniform(0.25, 0.7) * short)
            x = rng.uniform(x1, max(x1, x2 - side))
            y = rng.uniform(y1, max(y1, y1 + (y2 - y1) * 0.6 - side))
            window = (x, y, x + side, y + side)
            if not any(box_intersection(window, other) > 0 for other in avoid):
                windows.append(window)
    return windows


def mine(args: argparse.Namespace, config: ClassifierConfig) -> list[PhotoCrops]:
    """Detector candidates, teacher / labelled faces and random windows of every train photo, cropped."""
    prepare_offline_ultralytics()
    from inference.models.detect import YoloRunner, one_box_per_face

    runner = YoloRunner(str(args.weights), "cpu", imgsz=args.imgsz, conf=args.mine_conf, max_det=20)
    names = dataset_names(args.everyday)
    rng = random.Random(args.seed)
    photos: list[tuple[str, Path, list[Box], list[Box], bool, list[Box]]] = []
    for photo in ev.load_photos(args.everyday, args.objects, "train"):
        faces = [box for box, p in photo.teacher if p >= FACE_TEACHER_PROB]
        known = [box for box, p in photo.teacher if p >= ev.FALSE_FACE_TEACHER_PROB]
        people = [box for name, box in photo.objects if name == ev.PERSON] + [box for box, _ in photo.teacher]
        animals = [box for name, box in photo.objects if name in ANIMALS]
        windows = animal_windows(animals, people, args.animal_windows, rng)
        photos.append((f"voc_{photo.path.name}", photo.path, faces, known, photo.without_face(), windows))
    for label in sorted((args.everyday / "labels" / "train").glob("faces_*.txt")):
        image = args.everyday / "images" / "train" / f"{label.stem}.jpg"
        photos.append((label.stem, image, [], [], False, []))

    mined: list[PhotoCrops] = []
    started = time.monotonic()
    for index, (name, path, faces, known, face_free, windows) in enumerate(photos):
        with Image.open(path) as raw:
            image = ImageOps.exif_transpose(raw).convert("RGB")
        closeup = name.startswith("faces_")
        if closeup:
            label_file = args.everyday / "labels" / "train" / f"{name}.txt"
            labelled = ev.read_yolo_labels(label_file, names, *image.size)
            faces = known = [box for label, box in labelled if is_known_emotion(label)]
        found = one_box_per_face([b for b in runner.predict([image])[0] if is_known_emotion(b.label)])
        boxes, labels, candidate = [], [], []
        for raw_box in found:
            label = label_candidate(raw_box.box, faces, known)
            if closeup and label == OTHER:
                label = UNKNOWN  # close-up labels miss background faces
            if label != UNKNOWN:
                boxes.append(raw_box.box)
                labels.append(label)
                candidate.append(True)
        for face in faces:
            boxes.append(face)
            labels.append(FACE)
            candidate.append(False)
        if face_free:
            windows = windows + random_windows(image.size, args.windows, rng)
        for window in windows:
            boxes.append(window)
            labels.append(OTHER)
            candidate.append(False)
        if boxes:
            crops = [crop_face(image, box, config.margin) for box in boxes]
            pixels = (to_tensor(crops, config.size, config.channels) * 255).round().to(torch.uint8)
            mined.append(PhotoCrops(name, pixels, torch.tensor(labels), torch.tensor(candidate)))
        if (index + 1) % 500 == 0:
            logger.info("mined %d / %d photos (%.0f s)", index + 1, len(photos), time.monotonic() - started)
    return mined


def cached_crops(cache: Path, record: Callable[..., Crops], mine: Callable[[], list[Crops]]) -> list[Crops]:
    """The mined crops saved in ``cache`` (one ``record`` per photo), else ``mine()``'s, saved there: mining
    runs the detector over every train photo, so a second training run only trains."""
    if cache.is_file():
        logger.info("using mined crops %s", cache)
        return [record(**item) for item in torch.load(cache, weights_only=True)]
    mined = mine()
    torch.save([{f.name: getattr(p, f.name) for f in fields(p)} for p in mined], cache)
    return mined


def crop_cache(args: argparse.Namespace, check: str, settings: str) -> Path:
    """``--cache``, else a file beside ``--everyday`` named after the mining settings and a digest of the
    detector file: the crops are that detector's boxes, and a check trained on another detector's boxes learns
    the wrong mistakes."""
    if args.cache is not None:
        return args.cache
    return args.everyday / f"{check}_crops_{settings}_{file_sha256(args.weights)[:12]}.pt"


def load_or_mine(args: argparse.Namespace, config: ClassifierConfig) -> list[PhotoCrops]:
    settings = f"{args.size}_{args.margin}_{args.mine_conf}_{args.windows}_{args.animal_windows}"
    return cached_crops(crop_cache(args, "face_check", settings), PhotoCrops, lambda: mine(args, config))


def stack(photos: Sequence[PhotoCrops]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.cat([p.crops for p in photos]),
        torch.cat([p.labels for p in photos]),
        torch.cat([p.candidate for p in photos]),
    )


# --- training --------------------------------------------------------------------------------------
@torch.inference_mode()
def face_probability(model: CropNetwork, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """p(face) per crop, with the runtime's mirror averaging."""
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        x = images[start : start + batch].float() / 255.0
        out.append(torch.softmax(mirrored_logits(model, x), dim=1)[:, FACE])
    return torch.cat(out) if out else torch.empty(0)


def held_out_report(
    probs: torch.Tensor, labels: torch.Tensor, candidate: torch.Tensor, keep: float
) -> dict[str, Any]:
    """Class-balanced loss over every held-out crop; the threshold that keeps ``keep`` of the detector's
    true faces, and what that threshold rejects of its false faces and of the non-face windows."""
    clamped = probs.clamp(1e-6, 1 - 1e-6)
    losses = [
        float(F.binary_cross_entropy(clamped[labels == cls], labels[labels == cls].float()))
        for cls in (FACE, OTHER)
        if int((labels == cls).sum())
    ]
    faces = probs[(labels == FACE) & candidate]
    threshold = float(torch.quantile(faces, 1 - keep)) if len(faces) else 0.5
    false_faces, windows = probs[(labels == OTHER) & candidate], probs[(labels == OTHER) & ~candidate]

    def share(values: torch.Tensor, kept: bool) -> float | None:
        if not len(values):
            return None
        return round(float(((values >= threshold) == kept).float().mean()), 4)

    return {
        "loss": round(sum(losses) / max(1, len(losses)), 4),
        "threshold": round(threshold, 4),
        "faces": len(faces),
        "false_faces": len(false_faces),
        "windows": len(windows),
        "faces_kept": share(faces, kept=True),
        "false_faces_rejected": share(false_faces, kept=False),
        "windows_rejected": share(windows, kept=False),
    }


def train(args: argparse.Namespace) -> dict[str, Any]:
    set_torch_threads(args.threads)
    torch.manual_seed(args.seed)
    config = ClassifierConfig(
        classes=("other", FACE_CLASS),
        size=args.size,
        channels=3,
        margin=args.margin,
        widths=tuple(args.widths),
        dropout=0.2,
    )
    photos = load_or_mine(args, config)
    random.Random(args.seed).shuffle(photos)
    n_hold = max(1, len(photos) // 10)
    train_x, train_y, _ = stack(photos[n_hold:])
    hold_x, hold_y, hold_candidate = stack(photos[:n_hold])
    # Balance the two classes in the loss: faces outnumber the non-faces several times over.
    counts = torch.bincount(train_y, minlength=2).float()
    class_weight = counts.sum() / (2 * counts.clamp(min=1))
    logger.info(
        "train %d crops (%d faces, %d other); held-out %d crops (%d faces)",
        len(train_y),
        int(counts[FACE]),
        int(counts[OTHER]),
        len(hold_y),
        int((hold_y == FACE).sum()),
    )
    model = EmotionCNN(config)
    extra = {"keep": args.keep, "train_crops": len(train_y)}
    best, history = fit_check(
        model,
        config,
        args,
        (train_x, train_y),
        class_weight,
        held_out=lambda m: held_out_report(face_probability(m, hold_x), hold_y, hold_candidate, args.keep),
        score=lambda report: -report["loss"],
        extra=lambda report: {"threshold": report["threshold"], **extra},
    )
    return {"best_loss": best["loss"], "history": history, "out": str(args.out)}


def fit_check(
    model: CropNetwork,
    config: ClassifierConfig,
    args: argparse.Namespace,
    data: tuple[torch.Tensor, torch.Tensor],
    class_weight: torch.Tensor,
    held_out: Callable[[CropNetwork], dict[str, Any]],
    score: Callable[[dict[str, Any]], Any],
    extra: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train a crop check (this face check, ``training.train_object_check``) for ``args.epochs`` epochs of
    one-cycle AdamW. After each, ``held_out(model)`` reports on the held-out photos; the epoch whose report
    ``score`` is highest is saved to ``args.out`` with ``extra(report)``, the detector, mining threshold
    and history in its config. Returns the best report and the history."""
    steps = math.ceil(len(data[1]) / args.batch) * args.epochs
    optimizer, scheduler = one_cycle_adamw(model, args.lr, args.weight_decay, steps)
    generator = torch.Generator().manual_seed(args.seed)
    started, history = time.monotonic(), []
    best: tuple[Any, dict[str, Any]] | None = None
    for epoch in range(1, args.epochs + 1):
        mean_loss = run_epoch(
            model, optimizer, scheduler, data, args.batch, generator, class_weight=class_weight
        )
        report = held_out(model)
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(mean_loss, 4),
                **report,
                "minutes": round((time.monotonic() - started) / 60, 2),
            }
        )
        logger.info("epoch %d: %s", epoch, history[-1])
        if best is None or score(report) > best[0]:
            best = (score(report), report)
            notes = {
                **extra(report),
                "mine_conf": args.mine_conf,
                "detector": str(args.weights.name),
                "history": history,
            }
            save_checkpoint(
                args.out, model, replace(config, extra=notes), {"best_epoch": epoch, "held_out": report}
            )
    assert best is not None, "at least one epoch"
    return best[1], history


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train(parse_args(argv))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
