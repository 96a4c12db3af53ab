"""Train the YOLOv10 face-emotion detector and ship it into ``weights/emotion/``.

Examples::

    # from scratch, fully offline (what the shipped weights were made with)
    python -m training.train_detector --base yolov10n.yaml --imgsz 320 --time 1.4 --threads 1
    # COCO-pretrained start on a GPU machine with internet, on the converted AI-Hub set
    python -m training.train_detector --base yolov10n.pt --data data/aihub/data.yaml --device 0
    # train a finished run further: start from its best.pt at a low learning rate, no warm-up
    python -m training.train_detector --base runs/detect/emotion/weights/best.pt --name emotion2 \
        --optimizer AdamW --lr0 0.0004 --lrf 0.1 --warmup-epochs 0 --time 1.8
    # a run stopped half-way (killed, out of time): go on where it stopped
    python -m training.train_detector --resume runs/detect/emotion
    # ship the best checkpoint of a finished or stopped run
    python -m training.train_detector --ship-only runs/detect/emotion

Every run is resumable: ultralytics writes ``last.pt`` and ``best.pt`` after each epoch, and
``--resume`` continues from ``last.pt`` with the optimizer, schedule and epoch counter it had, and
ships at the end only if the run was not started with ``--no-ship``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from inference.models.runtime import prepare_offline_ultralytics, set_torch_threads
from inference.settings import REPO_ROOT

logger = logging.getLogger(__name__)

RUN_CHOICES = "train_detector.json"  # in the run folder: what --resume must remember

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "faces" / "data.yaml"
DEFAULT_OUT = REPO_ROOT / "weights" / "emotion"
DEFAULT_PROJECT = REPO_ROOT / "runs" / "detect"
PATIENCE = 10  # the research project's early-stopping rule
LICENCES = {
    "model": "ultralytics YOLOv10 (AGPL-3.0)",
    "data": (
        "see data.notes and weights/emotion/README.md (close-up faces: two Roboflow sets, CC BY 4.0; "
        "everyday photos: PASCAL VOC 2007, Flickr terms of use, faces labelled by facenet-pytorch's "
        "MTCNN, MIT licence)"
    ),
}
DEFAULT_CONF = 0.25  # ultralytics' predict default; evaluate_detector --set-conf may replace it


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="yolov10n.yaml", help="yolov10n.yaml (from scratch) or yolov10n.pt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="YOLO data.yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--time", type=float, default=None, help="time budget in hours (overrides --epochs)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--nbs", type=int, default=64, help="nominal batch: optimizer steps every nbs images")
    parser.add_argument("--device", default="", help="'' (auto), cpu, 0, 0,1 ...")
    parser.add_argument("--patience", type=int, default=PATIENCE)
    parser.add_argument("--optimizer", default="auto", help="auto, SGD, AdamW, ... (auto picks its own lr)")
    parser.add_argument("--lr0", type=float, default=0.01, help="initial learning rate (ignored by auto)")
    parser.add_argument("--lrf", type=float, default=0.01, help="final learning rate as a fraction of lr0")
    # Warm-up restarts a trained model at a low lr and, with an explicit optimizer, its biases at lr 0.1.
    parser.add_argument("--warmup-epochs", type=float, default=3.0, help="0 from trained weights")
    parser.add_argument("--close-mosaic", type=int, default=10, help="last epochs trained without mosaic")
    parser.add_argument(
        "--workers", type=int, default=2, help="dataloader worker processes (0: main process)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = one per core")
    parser.add_argument("--cache", choices=["ram", "disk", "none"], default="ram")
    parser.add_argument("--fraction", type=float, default=1.0, help="use this fraction of the train split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT, help="ultralytics run folder parent")
    parser.add_argument("--name", default="emotion", help="run name (folder under --project)")
    parser.add_argument(
        "--no-plots", action="store_true", help="skip ultralytics' plots (faster on tiny runs)"
    )
    parser.add_argument("--resume", type=Path, default=None, help="run folder (or its last.pt) to continue")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to ship model.pt + metadata.json"
    )
    parser.add_argument("--no-ship", action="store_true", help="train only; don't write --out")
    parser.add_argument("--ship-only", type=Path, default=None, help="run folder to ship without training")
    parser.add_argument("--conf", type=float, default=DEFAULT_CONF, help="confidence threshold for the bot")
    parser.add_argument("--classifier", type=Path, default=None, help="second-stage checkpoint to ship too")
    parser.add_argument(
        "--face-check", type=Path, default=None, help="face check checkpoint to ship too (train_face_check)"
    )
    parser.add_argument(
        "--object-check",
        type=Path,
        default=None,
        help="object check checkpoint to ship too (train_object_check)",
    )
    parser.add_argument(
        "--ship-imgsz", type=int, default=None, help="image size the bot runs at (default: the training size)"
    )
    return parser.parse_args(argv)


def load_yolo(weights: str | Path, threads: int) -> Any:
    """Import ultralytics offline (no font/asset download can block) and build or load a model."""
    os.environ.setdefault("YOLO_VERBOSE", "True")  # training wants ultralytics' progress log
    prepare_offline_ultralytics()
    from ultralytics import YOLO

    set_torch_threads(threads)
    return YOLO(str(weights))


def _keep_threads(threads: int) -> Any:
    """ultralytics' ``select_device`` resets torch to cpus-1 threads when training starts; undo it."""

    def callback(_trainer: Any) -> None:
        set_torch_threads(threads)

    return callback


def _checkpoint_in(run: Path, name: str) -> Path:
    return run if run.suffix == ".pt" else run / "weights" / name


def _run_folder(run_or_checkpoint: Path) -> Path:
    return run_or_checkpoint.parent.parent if run_or_checkpoint.suffix == ".pt" else run_or_checkpoint


def _record_choices(no_ship: bool) -> Any:
    """Keep the run's own options that ultralytics does not save (``RUN_CHOICES`` in its folder), so that
    ``--resume`` honours them: a resumed ``--no-ship`` run must not replace the shipped detector."""

    def callback(trainer: Any) -> None:
        choices = {"no_ship": no_ship}
        (Path(trainer.save_dir) / RUN_CHOICES).write_text(json.dumps(choices) + "\n", encoding="utf-8")

    return callback


def _resumed_run_ships(run: Path) -> bool:
    """Whether a resumed run ships: not when it was started with ``--no-ship``."""
    path = _run_folder(run) / RUN_CHOICES
    if not path.is_file():
        return True
    return not json.loads(path.read_text(encoding="utf-8")).get("no_ship", False)


def train(args: argparse.Namespace, callbacks: Mapping[str, Callable[[Any], None]] | None = None) -> Path:
    """Run ultralytics training; returns the run folder (holding weights/best.pt, last.pt).

    ``callbacks`` (ultralytics event → function of the trainer) are added to the model's own.
    """
    source = _checkpoint_in(args.resume, "last.pt") if args.resume is not None else args.base
    model = load_yolo(source, args.threads)
    model.add_callback("on_train_start", _keep_threads(args.threads))
    for event, callback in (callbacks or {}).items():
        model.add_callback(event, callback)
    if args.resume is not None:
        logger.info("resuming %s", source)
        model.train(resume=True)
    else:
        model.add_callback("on_train_start", _record_choices(args.no_ship))
        model.train(
            data=str(args.data),
            imgsz=args.imgsz,
            epochs=args.epochs,
            time=args.time,
            batch=args.batch,
            nbs=args.nbs,
            device=args.device or None,
            patience=args.patience,
            optimizer=args.optimizer,
            lr0=args.lr0,
            lrf=args.lrf,
            warmup_epochs=args.warmup_epochs,
            close_mosaic=args.close_mosaic,
            workers=args.workers,
            cache=False if args.cache == "none" else args.cache,
            fraction=args.fraction,
            seed=args.seed,
            project=str(args.project.resolve()),
            name=args.name,
            exist_ok=True,
            plots=not args.no_plots,
            save_period=-1,  # last.pt and best.pt are still written every epoch
        )
    return Path(model.trainer.save_dir)


def _training_summary(run: Path) -> dict[str, Any]:
    """Arguments, epochs and wall time of an ultralytics run, read from its args.yaml/results.csv."""
    train_args = yaml.safe_load((run / "args.yaml").read_text(encoding="utf-8"))
    summary: dict[str, Any] = {
        key: train_args.get(key)
        for key in (
            *("model", "data", "imgsz", "epochs", "time", "batch", "patience"),
            *("optimizer", "lr0", "lrf", "warmup_epochs", "close_mosaic", "seed"),
        )
    }
    results = run / "results.csv"
    if results.exists():
        rows = [line.split(",") for line in results.read_text(encoding="utf-8").strip().splitlines()]
        header = [h.strip() for h in rows[0]]
        body = [dict(zip(header, (v.strip() for v in row), strict=False)) for row in rows[1:]]
        summary["epochs_completed"] = len(body)
        if body and "time" in header:
            summary["train_hours"] = round(float(body[-1]["time"]) / 3600, 3)
        best = max(body, key=lambda r: float(r.get("metrics/mAP50-95(B)", 0) or 0), default=None)
        if best is not None:
            summary["best_epoch"] = int(float(best["epoch"]))
    previous = _run_of_checkpoint(str(summary.get("model") or ""))
    if previous is not None and previous != run:  # this run started from another run's checkpoint
        summary["continued_from"] = {"run": previous.name, **_training_summary(previous)}
    return summary


def _run_of_checkpoint(model: str) -> Path | None:
    """The ultralytics run folder of ``RUN/weights/<last|best>.pt`` (when it still exists), else ``None``."""
    path = Path(model)
    if path.suffix != ".pt" or path.parent.name != "weights":
        return None
    run = path.parent.parent
    return run if (run / "args.yaml").is_file() else None


def ship(
    run: Path,
    out: Path,
    conf: float,
    imgsz: int | None = None,
    stages: Mapping[str, Path | None] | None = None,
) -> Path:
    """Copy the run's best checkpoint (optimizer stripped, fp16) and write a fresh ``metadata.json``.

    ``stages`` maps a metadata key to a second-stage checkpoint: ``classifier`` (``train_face_classifier``),
    ``face_check`` (``train_face_check``) and ``object_check`` (``train_object_check``; the checks carry
    their own thresholds). Each is copied beside the model and named in the metadata; without them the
    detector runs alone, whatever the folder held before.
    """
    from ultralytics.utils.torch_utils import strip_optimizer

    best = _checkpoint_in(run, "best.pt")
    if not best.exists():
        best = _checkpoint_in(run, "last.pt")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.pt"
    strip_optimizer(best, str(target))  # a copy; the run keeps its resumable checkpoint
    run_dir = best.parent.parent
    model = load_yolo(target, threads=1)
    summary = _training_summary(run_dir) if (run_dir / "args.yaml").exists() else {}
    metadata: dict[str, Any] = {
        "classes": [model.names[i] for i in sorted(model.names)],
        "imgsz": imgsz or int(summary.get("imgsz") or model.overrides.get("imgsz") or 640),
        "conf": conf,
        "architecture": "YOLOv10n",
        "training": {**summary, "shipped_from": best.name, "shipped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "data": _data_description(summary.get("data")),
        "licences": LICENCES,
    }
    for key, stage in (stages or {}).items():
        if stage is not None:
            copy = out / stage.name
            if not (copy.exists() and copy.samefile(stage)):  # re-shipping the folder's own copy
                shutil.copyfile(stage, copy)
            metadata[key] = stage.name
    meta_path = out / "metadata.json"
    meta_path.write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    logger.info("shipped %s (%.2f MB) and %s", target, target.stat().st_size / 1e6, meta_path)
    return target


def _data_description(data_yaml: str | None) -> dict[str, Any]:
    """Where the training data came from; the shared faces set carries its licence in the yaml's header."""
    description: dict[str, Any] = {"yaml": data_yaml}
    if data_yaml and Path(data_yaml).exists():
        header = [
            line.lstrip("# ").strip()
            for line in Path(data_yaml).read_text(encoding="utf-8").splitlines()
            if line.startswith("#")
        ]
        description["notes"] = " ".join(header)
    return description


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    stages = {"classifier": args.classifier, "face_check": args.face_check, "object_check": args.object_check}
    if args.ship_only is not None:
        ship(args.ship_only, args.out, args.conf, args.ship_imgsz, stages)
        return
    started = time.monotonic()
    run = train(args)
    logger.info("training finished in %.1f min: %s", (time.monotonic() - started) / 60, run)
    if args.no_ship:
        return
    if args.resume is not None and not _resumed_run_ships(args.resume):
        logger.info("not shipped: %s was started with --no-ship (ship it with --ship-only)", run)
        return
    ship(run, args.out, args.conf, args.ship_imgsz, stages)


if __name__ == "__main__":
    main()
