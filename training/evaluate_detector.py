"""Evaluate a face-emotion detector on any YOLO-format split.

Example::

    python -m training.evaluate_detector --weights weights/emotion/model.pt \\
        --data ../shared/data/faces/data.yaml --split val --out runs/eval/emotion --update-metadata

Reports (``metrics.json`` under ``--out``, and with ``--update-metadata`` into ``metadata.json``):

- ultralytics box metrics: mAP50, mAP50-95, per-class AP50 / AP50-95, the confusion matrix and
  PR-curve PNGs;
- *dominant-face accuracy*: is the emotion of the largest face right? Measured through
  ``inference.models.detect.EmotionDetector`` exactly as the bot runs it (photo bytes → ``decode_image`` →
  detector at the shipped conf/imgsz → optional second-stage classifier), once without and once with
  the classifier when one is given or named in the metadata; an image with faces where nothing is
  detected counts as wrong;
- the same accuracy over a grid of confidence thresholds (``--conf-grid``), and the suggested
  threshold: the highest one within one point of the best accuracy (fewer false faces at no cost);
- detector latency per photo (p50/p95 ms, batch 1, ``--threads`` CPU threads);
- with ``--everyday data/everyday`` (built by ``training.label_everyday``): everyday photos through
  the bot's whole pipeline — face recall and false faces against the teacher, boxes over 40% of a
  photo, object keyword precision/recall against the VOC labels, emotion keywords and mood claims on
  photos without a face, threshold sweeps and a contact sheet (``everyday.json``,
  ``contact_sheet.png``; see ``training.everyday_eval``), and the mAP of the bot's own objects against
  the VOC labels (``object_map``: detector, mirror pass and object check, at conf 0.001 and at the
  bot's object threshold). ``--set-conf`` then also stores the face threshold with ≤ 3 false faces per
  100 photos and the object threshold with keyword precision ≥ 0.85 (with ``object_naming``, the
  check's score threshold ``object_check_min``).

Everyday example::

    python -m training.evaluate_detector --data data/everyday/faces_val.yaml --everyday data/everyday \
        --out weights/emotion/eval --update-metadata --set-conf
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from inference.models.runtime import prepare_offline_ultralytics, set_torch_threads
from inference.results import Box, box_area
from inference.settings import REPO_ROOT, load_settings

logger = logging.getLogger(__name__)

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "faces" / "data.yaml"
SHARED_OBJECTS = REPO_ROOT.parent / "shared" / "data" / "objects"
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "emotion" / "model.pt"
CONF_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
NEAR_TIE = 0.1  # two largest faces within 10 % of each other's area: no face dominates
MAX_DET = 20  # inference.models.detect's default: the bot never looks at more faces than this
PLOTS = ("confusion_matrix.png", "confusion_matrix_normalized.png", "BoxPR_curve.png", "BoxF1_curve.png")


@dataclass(frozen=True, slots=True)
class Sample:
    """One image of the split with its ground-truth faces (class name, box in displayed pixels)."""

    path: Path
    faces: list[tuple[str, Box]]

    def dominant(self) -> str | None:
        if not self.faces:
            return None
        return max(self.faces, key=lambda f: box_area(f[1]))[0]

    def near_tie(self) -> bool:
        """The two largest faces differ by under ``NEAR_TIE`` in area (e.g. the 4×4 face grids of the
        close-up set): which one is "dominant" is then the annotator's pixel rounding, not the photo."""
        areas = sorted((box_area(box) for _, box in self.faces), reverse=True)
        return len(areas) > 1 and areas[1] > (1 - NEAR_TIE) * areas[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="YOLO data.yaml")
    parser.add_argument("--split", default="val")
    parser.add_argument("--imgsz", type=int, default=None, help="default: the weights' metadata.json")
    parser.add_argument("--conf", type=float, default=None, help="default: the weights' metadata.json")
    parser.add_argument("--classifier", default="auto", help="auto (metadata), none, or a checkpoint path")
    parser.add_argument(
        "--face-check", default="auto", help="auto (metadata), none, or a checkpoint path (close-ups only)"
    )
    parser.add_argument("--conf-grid", type=float, nargs="*", default=list(CONF_GRID))
    parser.add_argument("--latency-images", type=int, default=100, help="photos timed for latency (0: skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = one per core")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "eval" / "emotion")
    parser.add_argument("--no-map", action="store_true", help="skip ultralytics' mAP validation")
    parser.add_argument("--update-metadata", action="store_true", help="write metrics into metadata.json")
    parser.add_argument("--set-conf", action="store_true", help="also store the suggested conf in metadata")
    parser.add_argument("--everyday", type=Path, default=None, help="training.label_everyday output folder")
    parser.add_argument(
        "--objects", type=Path, default=SHARED_OBJECTS, help="the VOC set --everyday refers to"
    )
    parser.add_argument("--no-closeups", action="store_true", help="only the --everyday report")
    return parser.parse_args(argv)


# --- data ------------------------------------------------------------------------------------------
def dataset(data_yaml: Path, split: str) -> tuple[list[str], list[Sample]]:
    """Class names and the split's samples, boxes scaled to each image's displayed size."""
    from PIL import Image, ImageOps

    config = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    names_raw = config["names"]
    names = [names_raw[k] for k in sorted(names_raw)] if isinstance(names_raw, dict) else list(names_raw)
    root = Path(config.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = data_yaml.parent / root
    image_dir = root / config[split]
    # ultralytics' rule: the labels live where the last /images/ of the path says /labels/
    label_dir = Path("/labels/".join(str(image_dir).rsplit("/images/", 1)))
    samples = []
    for path in sorted(
        p for p in image_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    ):
        with Image.open(path) as raw:
            width, height = (
                ImageOps.exif_transpose(raw).size if raw.getexif().get(0x0112, 1) != 1 else raw.size
            )
        faces = []
        label = label_dir / f"{path.stem}.txt"
        lines = label.read_text(encoding="utf-8").splitlines() if label.exists() else []
        for line in lines:
            parts = line.split()
            if len(parts) < 5:
                continue
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
            faces.append(
                (
                    names[cls],
                    (
                        (cx - w / 2) * width,
                        (cy - h / 2) * height,
                        (cx + w / 2) * width,
                        (cy + h / 2) * height,
                    ),
                )
            )
        samples.append(Sample(path, faces))
    return names, samples


# --- ultralytics box metrics -----------------------------------------------------------------------
def box_metrics(model: Any, data: Path, split: str, imgsz: int, device: str, out: Path) -> dict[str, Any]:
    """mAP50, mAP50-95 and per-class AP through ultralytics' validator; the main plots are copied to
    ``out``, the rest of its output (batch previews, extra curves) stays in ``out/ultralytics``."""
    metrics = model.val(
        data=str(data),
        split=split,
        imgsz=imgsz,
        batch=8,
        device=device,
        workers=0,
        plots=True,
        project=str(out.resolve()),
        name="ultralytics",
        exist_ok=True,
        verbose=False,
    )
    names = model.names
    per_class = {
        names[int(c)]: {
            "ap50": round(float(metrics.box.ap50[i]), 4),
            "ap50_95": round(float(metrics.box.ap[i]), 4),
        }
        for i, c in enumerate(metrics.box.ap_class_index)
    }
    save_dir = Path(metrics.save_dir)
    for name in PLOTS:
        if (save_dir / name).exists():
            shutil.copyfile(save_dir / name, out / name)
    return {
        "map50": round(float(metrics.box.map50), 4),
        "map50_95": round(float(metrics.box.map), 4),
        "precision": round(float(metrics.box.mp), 4),
        "recall": round(float(metrics.box.mr), 4),
        "per_class": per_class,
    }


# --- dominant-face accuracy, as the bot runs it ----------------------------------------------------
def detect_all(detector: Any, samples: Sequence[Sample], settings: Any) -> tuple[list[Any], list[float]]:
    """Raw boxes per sample at the runner's conf (decoded like an upload) and per-photo latency."""
    from inference.images import decode_image

    decoded, raw, latency = [], [], []
    for sample in samples:
        item = decode_image(  # the dataset's own photos: a broken one should stop the evaluation
            sample.path.read_bytes(),
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
        )
        start = time.perf_counter()
        raw.append(detector.runner.predict([item.image])[0])
        latency.append((time.perf_counter() - start) * 1000)
        decoded.append(item)
    return list(zip(decoded, raw, strict=True)), latency


def dominant_label(item: Any, boxes: Sequence[Any], classifier: Any, conf: float) -> str | None:
    """The label of the largest face with confidence ≥ conf, relabelled as ``EmotionDetector`` does."""
    kept = [b for b in boxes if b.confidence >= conf]
    if not kept:
        return None
    largest = max(kept, key=lambda b: box_area(b.box))
    if classifier is None:
        return str(largest.label)
    return str(classifier.classify([classifier.crop(item.image, largest.box)])[0][0])


def accuracy_table(
    samples: Sequence[Sample], detections: Sequence[Any], classifier: Any, grid: Sequence[float]
) -> dict[str, float]:
    with_faces = [(s, d) for s, d in zip(samples, detections, strict=True) if s.faces]
    table = {}
    for conf in grid:
        right = sum(
            dominant_label(item, boxes, classifier, conf) == s.dominant() for s, (item, boxes) in with_faces
        )
        table[f"{conf:g}"] = round(right / max(1, len(with_faces)), 4)
    return table


def bot_path_map(
    samples: Sequence[Sample], detections: Sequence[Any], classifier: Any, names: Sequence[str]
) -> dict[str, Any]:
    """mAP of what the bot sees (max_det 20, boxes mapped back to the photo), optionally with the
    classifier's labels; a relabelled box scores detector confidence × classifier probability."""
    truths = [[(names.index(name), box) for name, box in sample.faces] for sample in samples]
    predictions = [_scored_boxes(item, boxes, classifier, names) for item, boxes in detections]
    return mean_ap(truths, predictions, names)


def bot_face_boxes(runner: Any, detections: Sequence[Any], face_flip: bool) -> list[tuple[Any, list[Any]]]:
    """The face boxes the bot passes on from each photo's raw boxes at the runner's conf: one per face
    (``faces_over``) and, with ``face_flip``, those of the mirror image too (``faces_in_both_views``)."""
    from PIL import ImageOps

    from inference.models.detect import faces_in_both_views

    mirrors = [
        runner.predict([ImageOps.mirror(item.image)])[0] if face_flip else [] for item, _ in detections
    ]
    return [
        (item, faces_in_both_views(boxes, flipped, item.image.width, runner.conf))
        for (item, boxes), flipped in zip(detections, mirrors, strict=True)
    ]


Scored = tuple[int, float, Box]  # (class index, score, box in photo pixels)


def mean_ap(
    truths: Sequence[Sequence[tuple[int, Box]]], predictions: Sequence[Sequence[Scored]], names: Sequence[str]
) -> dict[str, Any]:
    """mAP50, mAP50-95 and per-class AP50 by ultralytics' own rules (``ap_per_class``; each prediction
    matched greedily, best score first), per photo: the labelled (class, box) pairs and the predictions.
    Classes nobody labelled are left out of the mean, as ultralytics does."""
    from ultralytics.utils.metrics import ap_per_class, box_iou

    thresholds = np.linspace(0.5, 0.95, 10)
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    target_cls: list[int] = []
    for truth, predicted in zip(truths, predictions, strict=True):
        target_cls += [cls for cls, _ in truth]
        if not predicted:
            continue
        ranked = sorted(predicted, key=lambda row: -row[1])
        scores = np.array([row[1] for row in ranked])
        classes = np.array([row[0] for row in ranked])
        if not truth:
            stats.append((np.zeros((len(ranked), len(thresholds)), dtype=bool), scores, classes))
            continue
        boxes = torch.tensor([row[2] for row in ranked], dtype=torch.float32)
        iou = box_iou(torch.tensor([box for _, box in truth], dtype=torch.float32), boxes).numpy()
        same_class = np.array([cls for cls, _ in truth])[:, None] == classes[None, :]
        stats.append((_match(iou * same_class, thresholds), scores, classes))
    if not stats or not target_cls:
        return {"map50": 0.0, "map50_95": 0.0, "per_class_ap50": {}}
    tp, conf, pred_cls = (np.concatenate(parts) for parts in zip(*stats, strict=True))
    result = ap_per_class(tp, conf, pred_cls, np.array(target_cls))
    ap, present = result[5], result[6]
    return {
        "map50": round(float(ap[:, 0].mean()), 4),
        "map50_95": round(float(ap.mean()), 4),
        "per_class_ap50": {names[int(c)]: round(float(ap[i, 0]), 4) for i, c in enumerate(present)},
    }


def _scored_boxes(item: Any, boxes: Sequence[Any], classifier: Any, names: Sequence[str]) -> list[Scored]:
    """(class id, score, box in photo pixels) per detection; labels outside ``names`` are dropped."""
    if classifier is None:
        labelled = [(b.label, b.confidence) for b in boxes]
    else:
        probs = (
            classifier.probabilities([classifier.crop(item.image, b.box) for b in boxes]) if boxes else None
        )
        labelled = []
        for i, b in enumerate(boxes):
            assert probs is not None
            best = int(probs[i].argmax())
            labelled.append((classifier.classes[best], b.confidence * float(probs[i, best])))
    return [
        (names.index(label), score, item.to_original(b.box))
        for b, (label, score) in zip(boxes, labelled, strict=True)
        if label in names
    ]


def _match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy matching in descending score order (ultralytics' validator rule): (detections, thresholds)."""
    correct = np.zeros((iou.shape[1], len(thresholds)), dtype=bool)
    matched = np.zeros((iou.shape[0], len(thresholds)), dtype=bool)
    for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
        available = np.where(matched, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, range(len(thresholds))] >= thresholds
        matched[k, range(len(thresholds))] |= correct[j]
    return correct


def suggest_conf(table: dict[str, float]) -> float:
    """The highest threshold within one point of the best accuracy: fewer false faces, same accuracy."""
    best = max(table.values())
    return max(float(conf) for conf, acc in table.items() if acc >= best - 0.01)


def pipeline_accuracy(detector: Any, samples: Sequence[Sample], settings: Any) -> dict[str, Any]:
    """Dominant-face accuracy through ``EmotionDetector.detect`` itself, with per-class detail."""
    from inference.images import decode_image

    confusion: dict[str, Counter[str]] = {}
    right = total = 0
    single_right = single_total = 0  # photos with one face: no near-tie over which face is largest
    tie_right = tie_total = 0
    false_faces = background = 0
    for sample in samples:
        item = decode_image(
            sample.path.read_bytes(),
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
        )
        faces = detector.detect([item])[0]
        predicted = max(faces, key=lambda f: f.area).label if faces else "(none)"
        truth = sample.dominant()
        if truth is None:
            background += 1
            false_faces += bool(faces)
            continue
        total += 1
        right += predicted == truth
        if len(sample.faces) == 1:
            single_total += 1
            single_right += predicted == truth
        if sample.near_tie():
            tie_total += 1
            tie_right += predicted == truth
        confusion.setdefault(truth, Counter())[predicted] += 1
    per_class = {name: round(c[name] / max(1, sum(c.values())), 4) for name, c in sorted(confusion.items())}
    return {
        "dominant_face_accuracy": round(right / max(1, total), 4),
        "images_with_faces": total,
        "single_face_accuracy": round(single_right / max(1, single_total), 4),
        "single_face_images": single_total,
        "near_tie_images": tie_total,
        "near_tie_accuracy": round(tie_right / max(1, tie_total), 4),
        "accuracy_without_near_ties": round((right - tie_right) / max(1, total - tie_total), 4),
        "per_class": per_class,
        "confusion": {truth: dict(c) for truth, c in sorted(confusion.items())},
        "background_images": background,
        "background_images_with_false_faces": false_faces,
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


# --- entry point -----------------------------------------------------------------------------------
def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    prepare_offline_ultralytics()
    set_torch_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {} if args.no_closeups else evaluate_closeups(args)
    if args.everyday is not None:
        report["everyday"] = evaluate_everyday(args)
    (args.out / "metrics.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    if args.update_metadata:
        write_metadata(args.weights.parent / "metadata.json", report, args.set_conf)
    return report


def evaluate_closeups(args: argparse.Namespace) -> dict[str, Any]:
    """mAP, dominant-face accuracy, the threshold sweep and latency on a face-emotion split."""
    from inference.models.detect import EmotionDetector, YoloRunner, pass_options, read_metadata

    weights = str(args.weights.resolve())
    metadata = read_metadata(weights)
    imgsz = args.imgsz or int(metadata.get("imgsz", 320))
    conf = args.conf if args.conf is not None else float(metadata.get("conf", 0.25))
    settings = load_settings(
        weights_dir=args.weights.parent.parent, emotion_weights=weights, device=args.device
    )
    names, samples = dataset(args.data, args.split)
    grid = sorted({*args.conf_grid, conf})
    # One low-threshold pass serves the threshold sweep and the mAP of the bot's own path.
    runner = YoloRunner(weights, args.device, imgsz=imgsz, conf=min(0.001, *grid), max_det=MAX_DET)
    _check_names(names, list(runner.names.values()))
    report: dict[str, Any] = {"split": f"{args.data}:{args.split}", "images": len(samples), "imgsz": imgsz}
    if not args.no_map:
        report["box"] = box_metrics(runner.model, args.data, args.split, imgsz, args.device, args.out)
        set_torch_threads(args.threads)  # the validator's select_device reset it

    classifier = _classifier(args.classifier, metadata, args.weights.parent, args.device)
    detections, _ = detect_all(EmotionDetector(runner, None), samples, settings)
    report["conf_grid"] = {"detector_only": accuracy_table(samples, detections, None, grid)}
    if classifier is not None:
        report["conf_grid"]["with_classifier"] = accuracy_table(samples, detections, classifier, grid)
    report["bot_path_map"] = {"detector_only": bot_path_map(samples, detections, None, names)}
    if classifier is not None:
        report["bot_path_map"]["with_classifier"] = bot_path_map(samples, detections, classifier, names)
    # The same boxes as the bot keeps them: one per face, the mirror image's too with face_flip.
    faces = bot_face_boxes(runner, detections, pass_options(metadata)["face_flip"])
    report["bot_faces_map"] = {"detector_only": bot_path_map(samples, faces, None, names)}
    if classifier is not None:
        report["bot_faces_map"]["with_classifier"] = bot_path_map(samples, faces, classifier, names)
    chosen = report["conf_grid"]["with_classifier" if classifier is not None else "detector_only"]
    report["suggested_conf"] = suggest_conf(chosen)

    if args.set_conf and args.everyday is None:  # everyday photos choose the face threshold otherwise
        conf = report["suggested_conf"]
    runner.conf = conf
    report["conf"] = conf
    report["detector_only"] = pipeline_accuracy(EmotionDetector(runner, None), samples, settings)
    face_check = _face_check(args.face_check, metadata, args.weights.parent, args.device)
    report["face_check"] = None if face_check is None else {"threshold": face_check.threshold}
    # The object check and threshold the metadata names, so the latency is the bot's whole detector stage.
    object_check = _object_check(metadata, args.weights.parent, args.device)
    object_conf = metadata.get("object_conf")
    final = EmotionDetector(
        runner,
        classifier,
        object_conf=None if object_conf is None else float(object_conf),
        face_check=face_check,
        object_check=object_check,
        **pass_options(metadata),
    )
    if classifier is not None:
        report["with_classifier"] = pipeline_accuracy(final, samples, settings)
    if args.latency_images:
        report["latency"] = latency(final, samples[: args.latency_images], settings, args.threads)
    return report


def evaluate_everyday(args: argparse.Namespace) -> dict[str, Any]:
    """Everyday VOC val photos through the whole bot pipeline (``training.everyday_eval``)."""
    from inference.models.detect import pass_options, read_metadata
    from inference.models.pipeline import Pipeline
    from training import everyday_eval as ev

    weights = str(args.weights.resolve())
    metadata = read_metadata(weights)
    photos = ev.load_photos(args.everyday, args.objects, args.split)
    base = {"weights_dir": args.weights.parent.parent, "emotion_weights": weights, "device": args.device}
    base["torch_threads"] = args.threads
    if args.imgsz:  # else the weights' metadata, as the bot runs it
        base["emotion_imgsz"] = args.imgsz
    options = pass_options(metadata)
    naming = options["object_naming"] is not None
    object_conf = float(metadata.get("object_conf", 0.35))
    # Named objects are swept by their score (the check's threshold) above the shipped detector
    # threshold; checked ones by the detector threshold, the check's own threshold fixed.
    sweep = Pipeline.from_settings(
        load_settings(
            **base, emotion_conf=ev.SWEEP_CONF, object_conf=object_conf if naming else ev.SWEEP_CONF
        )
    )
    if naming:
        _set_check_min(sweep.emotion, 0.0)
    run_photos(sweep, photos)
    groups = {group.label: group.members for group in options["object_groups"]}
    face_table = [ev.face_metrics(photos, conf) for conf in ev.FACE_CONF_GRID]
    object_table = [ev.object_metrics(photos, conf, groups) for conf in ev.OBJECT_CONF_GRID]
    face_conf = float(metadata.get("conf", 0.25))
    object_min = float(metadata.get("object_check_min", 0.0)) if naming else object_conf
    if args.set_conf:
        face_conf, object_min = ev.pick_face_conf(face_table), ev.pick_object_conf(object_table)
    object_conf = object_conf if naming else object_min
    shipped = Pipeline.from_settings(load_settings(**base, emotion_conf=face_conf, object_conf=object_conf))
    if naming:
        _set_check_min(shipped.emotion, object_min)
    run_photos(shipped, photos)
    report = {
        "split": f"{args.everyday}:{args.split}",
        "photos": len(photos),
        "imgsz": shipped.emotion.runner.imgsz,
        "faces": ev.face_metrics(photos, face_conf),
        "objects": ev.object_metrics(photos, object_min, groups),
        "object_map": object_map(base, photos, object_conf),
        "honesty": ev.honesty_metrics(photos),
        "face_conf_grid": face_table,
        "object_conf_grid": object_table,
        "object_grid_is": "object score (object_check_min)" if naming else "detector conf (object_conf)",
        "conf": face_conf,
        "object_conf": object_conf,
        **({"object_check_min": object_min} if naming else {}),
        "contact_sheet": str(
            ev.contact_sheet(photos, args.out / "contact_sheet.png", face_conf, object_conf)
        ),
    }
    logger.info("everyday: faces %s, objects %s", report["faces"], report["objects"])
    return report


MAP_CONF = 0.001  # ultralytics' val threshold: mAP ranks every box, the curve picks no threshold


def object_map(base: dict[str, Any], photos: Sequence[Any], bot_conf: float) -> dict[str, Any]:
    """mAP of the objects the bot's detector reports (its model, mirror pass, object check and, with
    ``object_naming``, the check's classes and scores) against the VOC labels (``person`` aside, which
    the model does not detect): at ``MAP_CONF`` as ultralytics scores a detector, and from the boxes
    over the bot's own detector threshold ``bot_conf``. A named object's score ranks, so the check's
    threshold (on that score) is lifted; a checked object's detector confidence ranks, so the check
    keeps its threshold. Boxes are the bot's, in photo pixels, at most its max_det."""
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    report = {}
    for key, conf in (("at_conf_0.001", MAP_CONF), (f"at_bot_conf_{bot_conf:g}", bot_conf)):
        settings = load_settings(**base, object_conf=conf)
        detector = EmotionDetector.from_settings(settings, settings.device)
        if detector.object_naming is not None:
            _set_check_min(detector, 0.0)
        names = detector.object_names
        truths: list[list[tuple[int, Box]]] = []
        predictions: list[list[Scored]] = []
        for photo in photos:
            item = decode_image(photo.path.read_bytes(), max_side=settings.max_image_side)
            _, objects = detector.detect_all([item])[0]
            truths.append([(names.index(name), box) for name, box in photo.objects if name in names])
            predictions.append(
                [(names.index(o.label), o.confidence, o.box) for o in objects if o.label in names]
            )
        report[key] = mean_ap(truths, predictions, names)
        logger.info("object mAP50 %s: %.4f", key, report[key]["map50"])
    return report


def _set_check_min(detector: Any, threshold: float) -> None:
    """The object check's threshold of ``detector`` (an ``EmotionDetector``), where it has a check."""
    if detector.object_check is not None:
        detector.object_check.threshold = threshold


def run_photos(pipeline: Any, photos: Sequence[Any]) -> None:
    """Each photo through the pipeline as the bot runs it (sampled comment), result kept on the photo."""
    from inference.models.pipeline import PipelineRequest
    from inference.results import CommentResult

    for photo in photos:
        result = pipeline.run_batch([PipelineRequest(photo.path.read_bytes())])[0]
        if not isinstance(result, CommentResult):
            raise RuntimeError(f"{photo.path}: {result!r}")
        photo.result, photo.comment, photo.keywords = result, result.comment, result.keywords


def latency(detector: Any, samples: Sequence[Sample], settings: Any, threads: int) -> dict[str, Any]:
    """Time per photo at batch 1 (decode excluded), after two warm-up calls: the detector alone and,
    when it has any, detector + second stages (face check, classifier; ``EmotionDetector.detect``)."""
    from inference.images import decode_image

    items = [decode_image(s.path.read_bytes(), max_side=settings.max_image_side) for s in samples]
    report: dict[str, Any] = {
        "photos": len(items),
        "threads": threads or "all cores",
        "imgsz": detector.runner.imgsz,
    }
    stages = {"detector": lambda item: detector.runner.predict([item.image])}
    if any(stage is not None for stage in (detector.classifier, detector.face_check, detector.object_check)):
        stages["with_classifier"] = lambda item: detector.detect([item])
    for name, run in stages.items():
        for item in items[:2]:
            run(item)
        set_torch_threads(threads)  # ultralytics' first predict resets torch to cpus-1 threads
        report["torch_threads"] = torch.get_num_threads()
        times = []
        for item in items:
            start = time.perf_counter()
            run(item)
            times.append((time.perf_counter() - start) * 1000)
        prefix = "" if name == "detector" else "with_classifier_"
        report[f"{prefix}p50_ms"] = round(statistics.median(times), 1)
        report[f"{prefix}p95_ms"] = round(percentile(times, 0.95), 1)
    return report


def _stage_path(choice: str, metadata: dict[str, Any], key: str, folder: Path) -> Path | None:
    """A second stage's checkpoint: ``none``, ``auto`` (named by ``key`` in the metadata) or a path."""
    if choice == "none":
        return None
    if choice != "auto":
        return Path(choice)
    return folder / metadata[key] if metadata.get(key) else None


def _classifier(choice: str, metadata: dict[str, Any], folder: Path, device: str) -> Any:
    path = _stage_path(choice, metadata, "classifier", folder)
    if path is None:
        return None
    from inference.models.face_classifier import FaceEmotionClassifier

    return FaceEmotionClassifier.load(path, device)


def _face_check(choice: str, metadata: dict[str, Any], folder: Path, device: str) -> Any:
    path = _stage_path(choice, metadata, "face_check", folder)
    if path is None:
        return None
    from inference.models.face_classifier import FaceCheck

    threshold = metadata.get("face_check_min") if choice == "auto" else None
    return FaceCheck.load(path, device, None if threshold is None else float(threshold))


def _object_check(metadata: dict[str, Any], folder: Path, device: str) -> Any:
    path = _stage_path("auto", metadata, "object_check", folder)
    if path is None:
        return None
    from inference.models.object_check import ObjectCheck

    threshold = metadata.get("object_check_min")
    return ObjectCheck.load(path, device, None if threshold is None else float(threshold))


def _check_names(data_names: Sequence[str], model_names: Sequence[str]) -> None:
    if list(data_names) != list(model_names):
        logger.warning("class names differ: data %s, model %s", data_names, model_names)


def write_metadata(path: Path, report: dict[str, Any], set_conf: bool) -> None:
    metadata = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    everyday = report.get("everyday")
    if everyday is not None:
        metadata["everyday_metrics"] = {
            key: everyday[key]
            for key in ("split", "photos", "faces", "objects", "object_map", "conf", "object_conf")
        }
        metadata["everyday_metrics"]["honesty"] = {
            k: v for k, v in everyday["honesty"].items() if not k.endswith("examples")
        }
        if set_conf:
            metadata["conf"], metadata["object_conf"] = everyday["conf"], everyday["object_conf"]
            if "object_check_min" in everyday:  # named objects: the score threshold was swept
                metadata["object_check_min"] = everyday["object_check_min"]
    if "detector_only" not in report:  # everyday photos only
        path.write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return
    metrics = {
        "split": report["split"],
        "box": report.get("box"),
        "dominant_face_accuracy": {
            "detector_only": report["detector_only"]["dominant_face_accuracy"],
            **(
                {"with_classifier": report["with_classifier"]["dominant_face_accuracy"]}
                if "with_classifier" in report
                else {}
            ),
        },
        "conf": report["conf"],
        "latency": report.get("latency"),
    }
    metadata["metrics"] = metrics
    if set_conf and everyday is None:
        metadata["conf"] = report["suggested_conf"]
    path.write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = evaluate(parse_args(argv))
    summary = {k: v for k, v in report.items() if k not in ("detector_only", "with_classifier", "everyday")}
    if "everyday" in report:
        summary["everyday"] = {k: v for k, v in report["everyday"].items() if not k.endswith("_grid")}
    for key in ("detector_only", "with_classifier"):
        if key in report:
            summary[key] = {k: report[key][k] for k in ("dominant_face_accuracy", "per_class")}
    print(json.dumps(summary, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
