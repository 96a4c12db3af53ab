"""Join face-crop emotion classifiers into one ensemble checkpoint and score it.

Example::

    python -m training.ensemble_face_classifier runs/clf/seed0.pt runs/clf/seed1.pt \\
        --out weights/emotion/face_classifier.pt

The members must share one network config (classes, input size, margin, widths) and the held-out
split: train them with the same ``--seed`` and different ``--init-seed`` (``training.train_face_classifier``).
Each member and their mean are scored on that held-out tenth of the close-up train photos and on FER
val; the scores go into the checkpoint's ``metrics``, which ``inference.models.face_classifier``
loads as one classifier whose probabilities are the members' mean.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from inference.models.face_classifier import (
    ClassifierConfig,
    CropNetwork,
    network_from_state,
    save_ensemble,
)
from inference.models.runtime import set_torch_threads
from training.train_face_classifier import (
    SHARED,
    accuracy,
    dataset_names,
    load_fer,
    per_class_accuracy,
    split_detection_crops,
    stack,
)

logger = logging.getLogger(__name__)

# Keys of a member's config that may differ between members: its free-form training notes.
_NOTES = "extra"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("members", type=Path, nargs="+", help="checkpoints of train_face_classifier")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fer", type=Path, default=SHARED / "fer2013", help="folder with fer2013_*.npz")
    parser.add_argument("--faces", type=Path, default=SHARED / "faces", help="YOLO set (images/, labels/)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="held-out split seed of members that record none (trained before it was recorded with "
        "train_face_classifier's default, 0)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = one per core")
    return parser.parse_args(argv)


def load_member(path: Path) -> tuple[CropNetwork, ClassifierConfig]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "model" not in checkpoint:
        raise ValueError(f"{path}: not a single-network checkpoint")
    config = ClassifierConfig.from_dict(checkpoint["config"])
    return network_from_state(config, checkpoint["model"]), config


def common_config(
    paths: Sequence[Path], configs: Sequence[ClassifierConfig], default_seed: int
) -> ClassifierConfig:
    """The members' shared config; different networks or held-out splits cannot be averaged honestly."""
    shapes = {
        json.dumps({k: v for k, v in asdict(c).items() if k != _NOTES}, sort_keys=True) for c in configs
    }
    if len(shapes) != 1:
        raise ValueError("members differ in classes, input size, margin or widths")
    seeds = {c.extra.get("seed", default_seed) for c in configs}
    if len(seeds) != 1:
        raise ValueError(f"members must share one --seed (the held-out split), got {sorted(seeds)}")
    notes = [
        {"file": p.name, "init_seed": c.extra.get("init_seed")} for p, c in zip(paths, configs, strict=True)
    ]
    return replace(configs[0], extra={"seed": seeds.pop(), "members": notes})


def score(
    models: Sequence[CropNetwork], config: ClassifierConfig, args: argparse.Namespace
) -> dict[str, Any]:
    names = dataset_names(args.faces)
    held_out, _ = split_detection_crops(args.faces, config, names, int(config.extra["seed"]))
    hold_x, hold_y = stack(held_out)
    fer_x, fer_y = load_fer(args.fer / "fer2013_validation.npz", config.classes)
    return {
        "members": len(models),
        "held_out_detection_acc": round(accuracy(models, hold_x, hold_y), 4),
        "fer_val_acc": round(accuracy(models, fer_x, fer_y), 4),
        "held_out_per_class": per_class_accuracy(models, hold_x, hold_y, config.classes),
        "member_held_out_detection_acc": [round(accuracy(m, hold_x, hold_y), 4) for m in models],
        "member_fer_val_acc": [round(accuracy(m, fer_x, fer_y), 4) for m in models],
        "held_out_crops": len(hold_y),
    }


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    set_torch_threads(args.threads)
    loaded = [load_member(path) for path in args.members]
    models = [model for model, _ in loaded]
    config = common_config(args.members, [c for _, c in loaded], args.seed)
    metrics = score(models, config, args)
    save_ensemble(args.out, models, config, metrics)
    logger.info("wrote %s", args.out)
    print(json.dumps(metrics, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
