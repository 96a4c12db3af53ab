"""Train the second-stage face-crop emotion classifier (``inference/models/face_classifier.py``).

Example::

    python -m training.train_face_classifier --epochs 12 --threads 1 \\
        --out weights/emotion/face_classifier.pt

Data: the FER2013 48×48 grey crops plus the face boxes of the detection set's train split, cropped
the way the runtime crops a detected box (``crop_face``, same margin). A held-out tenth of the
detection train images picks the best epoch, so the detection val split stays an honest test.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from PIL import Image, ImageOps

from inference.models.face_classifier import (
    ClassifierConfig,
    CropNetwork,
    EmotionCNN,
    as_members,
    crop_face,
    mean_probabilities,
    save_checkpoint,
    to_tensor,
)
from inference.models.runtime import set_torch_threads
from inference.settings import REPO_ROOT

logger = logging.getLogger(__name__)

SHARED = REPO_ROOT.parent / "shared" / "data"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fer", type=Path, default=SHARED / "fer2013", help="folder with fer2013_*.npz")
    parser.add_argument("--faces", type=Path, default=SHARED / "faces", help="YOLO set (images/, labels/)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "weights" / "emotion" / "face_classifier.pt")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=0.0, help="stop after this wall time (0: no limit)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument(
        "--domain-repeat", type=int, default=3, help="times each detection crop is seen per epoch"
    )
    parser.add_argument("--fer-limit", type=int, default=0, help="use at most this many FER crops (0: all)")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = one per core")
    parser.add_argument("--seed", type=int, default=0, help="the held-out split (and the FER sample)")
    parser.add_argument(
        "--init-seed",
        type=int,
        default=None,
        help="weights, augmentation and batch order only (default: --seed); members of an ensemble "
        "share --seed so that every member's held-out tenth is the same unseen photos",
    )
    return parser.parse_args(argv)


# --- data ------------------------------------------------------------------------------------------
def load_fer(
    path: Path, classes: Sequence[str], limit: int = 0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """FER2013 crops whose class name is one of ``classes`` (ids remapped by name); with ``limit``, a
    seeded random sample of that many. The files are sorted by class, so their first N crops would hold
    no ``happy`` or ``neutral`` face at all (what the session-1 classifier was trained with)."""
    with np.load(path, allow_pickle=False) as data:
        images, labels, names = data["images"], data["labels"], [str(n) for n in data["names"]]
    remap = np.array([classes.index(n) if n in classes else -1 for n in names])
    keep = remap[labels] >= 0
    images, targets = images[keep], remap[labels[keep]]
    if limit and limit < len(targets):
        chosen = np.sort(np.random.default_rng(seed).permutation(len(targets))[:limit])
        images, targets = images[chosen], targets[chosen]
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(targets).long()


def detection_crops(
    root: Path, split: str, config: ClassifierConfig, names: Sequence[str]
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Per image: (image name, crops uint8 (N,1,S,S), class ids) from YOLO labels, names remapped."""
    out = []
    for label_file in sorted((root / "labels" / split).glob("*.txt")):
        rows = [line.split() for line in label_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        image_path = next((root / "images" / split).glob(label_file.stem + ".*"), None)
        if not rows or image_path is None:
            continue
        with Image.open(image_path) as raw:
            image = ImageOps.exif_transpose(raw).convert("L")
        crops, ids = [], []
        for row in rows:
            class_id, cx, cy, w, h = int(row[0]), *(float(v) for v in row[1:5])
            if names[class_id] not in config.classes:
                continue
            box = (
                (cx - w / 2) * image.width,
                (cy - h / 2) * image.height,
                (cx + w / 2) * image.width,
                (cy + h / 2) * image.height,
            )
            crops.append(crop_face(image, box, config.margin))
            ids.append(config.classes.index(names[class_id]))
        if crops:
            tensor = (to_tensor(crops, config.size) * 255).round().to(torch.uint8)
            out.append((image_path.name, tensor, torch.tensor(ids)))
    return out


def split_detection_crops(
    root: Path, config: ClassifierConfig, names: Sequence[str], seed: int
) -> tuple[list[tuple[str, torch.Tensor, torch.Tensor]], list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """(held-out tenth, the rest) of the train split's per-image crops, shuffled by ``seed``: whole
    photos, so the epoch is picked on faces of photos the network never saw."""
    per_image = detection_crops(root, "train", config, names)
    random.Random(seed).shuffle(per_image)
    n_hold = max(1, len(per_image) // 10) if len(per_image) > 1 else 0
    return per_image[:n_hold], per_image[n_hold:]


def stack(items: Sequence[tuple[str, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    if not items:
        return torch.empty(0, 1, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return torch.cat([i[1] for i in items]), torch.cat([i[2] for i in items])


def dataset_names(root: Path) -> list[str]:
    import yaml

    names = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))["names"]
    return [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)


# --- augmentation ----------------------------------------------------------------------------------
def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random scale/shift/rotation (a detector's box is never the annotator's), mirror, light jitter."""
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-0.2, 0.2)
    scale = uniform(0.85, 1.15)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-0.1, 0.1)], 1),
            torch.stack([sin * flip, cos, uniform(-0.1, 0.1)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    contrast = uniform(0.7, 1.3).view(n, 1, 1, 1)
    brightness = uniform(-0.15, 0.15).view(n, 1, 1, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(0, 1)


# --- training --------------------------------------------------------------------------------------
@torch.inference_mode()
def accuracy(
    models: CropNetwork | Sequence[CropNetwork], images: torch.Tensor, targets: torch.Tensor, batch: int = 512
) -> float:
    """Share of crops whose class is the argmax of the members' mean (mirror-averaged) probabilities,
    as ``FaceEmotionClassifier`` labels them; one network is an ensemble of one."""
    if len(targets) == 0:
        return float("nan")
    for model in as_members(models):
        model.eval()
    correct = 0
    for start in range(0, len(targets), batch):
        probs = mean_probabilities(models, images[start : start + batch].float() / 255.0)
        correct += int((probs.argmax(1) == targets[start : start + batch]).sum())
    return correct / len(targets)


def per_class_accuracy(
    models: CropNetwork | Sequence[CropNetwork],
    images: torch.Tensor,
    targets: torch.Tensor,
    classes: Sequence[str],
) -> dict[str, float]:
    return {
        name: round(accuracy(models, images[targets == i], targets[targets == i]), 4)
        for i, name in enumerate(classes)
        if int((targets == i).sum())
    }


def one_cycle_adamw(
    model: CropNetwork, lr: float, weight_decay: float, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle rate (15% warm-up), the schedule both crop classifiers train with."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.15
    )
    return optimizer, scheduler


def run_epoch(
    model: CropNetwork,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: tuple[torch.Tensor, torch.Tensor],
    batch: int,
    generator: torch.Generator,
    smoothing: float = 0.0,
    class_weight: torch.Tensor | None = None,
) -> float:
    """One shuffled pass over uint8 crops with augmentation; the mean training loss."""
    images, targets = data
    model.train()
    order = torch.randperm(len(targets), generator=generator)
    running = 0.0
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        x = augment(images[index].float() / 255.0, generator)
        loss = F.cross_entropy(model(x), targets[index], weight=class_weight, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item() * len(index)
    return running / max(1, len(order))


def train(args: argparse.Namespace) -> dict[str, Any]:
    set_torch_threads(args.threads)
    init_seed = args.seed if args.init_seed is None else args.init_seed
    torch.manual_seed(init_seed)
    config = ClassifierConfig(widths=tuple(args.widths))
    names = dataset_names(args.faces)
    fer_x, fer_y = load_fer(args.fer / "fer2013_train.npz", config.classes, args.fer_limit, args.seed)
    fer_val_x, fer_val_y = load_fer(
        args.fer / "fer2013_validation.npz", config.classes, args.fer_limit, args.seed
    )
    held_out, kept = split_detection_crops(args.faces, config, names, args.seed)
    hold_x, hold_y = stack(held_out)
    det_x, det_y = stack(kept)
    train_x = torch.cat([fer_x, *[det_x] * args.domain_repeat])
    train_y = torch.cat([fer_y, *[det_y] * args.domain_repeat])
    logger.info(
        "train %d crops (%d FER, %d detection ×%d); held-out %d detection crops, %d FER val",
        len(train_y),
        len(fer_y),
        len(det_y),
        args.domain_repeat,
        len(hold_y),
        len(fer_val_y),
    )

    model = EmotionCNN(config)
    steps_per_epoch = math.ceil(len(train_y) / args.batch)
    optimizer, scheduler = one_cycle_adamw(model, args.lr, args.weight_decay, steps_per_epoch * args.epochs)
    generator = torch.Generator().manual_seed(init_seed)
    started, best, history = time.monotonic(), -1.0, []
    for epoch in range(1, args.epochs + 1):
        mean_loss = run_epoch(
            model, optimizer, scheduler, (train_x, train_y), args.batch, generator, smoothing=0.1
        )
        held = accuracy(model, hold_x, hold_y)
        fer_val = accuracy(model, fer_val_x, fer_val_y)
        score = held if not math.isnan(held) else fer_val
        elapsed = time.monotonic() - started
        history.append(
            {
                "epoch": epoch,
                "loss": round(mean_loss, 4),
                "held_out_acc": round(held, 4),
                "fer_val_acc": round(fer_val, 4),
                "minutes": round(elapsed / 60, 2),
            }
        )
        logger.info("epoch %d: %s", epoch, history[-1])
        if score > best:
            best = score
            metrics = {
                "best_epoch": epoch,
                "held_out_detection_acc": round(held, 4),
                "fer_val_acc": round(fer_val, 4),
                "held_out_per_class": per_class_accuracy(model, hold_x, hold_y, config.classes),
            }
            extra = {
                "train_crops": len(train_y),
                "seed": args.seed,
                "init_seed": init_seed,
                "history": history,
            }
            saved = replace(config, extra=extra)
            save_checkpoint(args.out, model, saved, metrics)
        if args.minutes and elapsed > args.minutes * 60:
            logger.info("time budget reached after epoch %d", epoch)
            break
    return {"best": best, "history": history, "out": str(args.out)}


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train(parse_args(argv))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
