"""Run ``training.train_detector`` on a lent GPU machine whose image lacks two things ultralytics wants.

- polars: ultralytics reads ``results.csv`` with it when it saves a checkpoint; here the csv module
  reads it instead (the same dictionary of columns).
- a YOLO11n download for its AMP check: no network there, so AMP is simply on for a CUDA model (what
  the check finds on any recent NVIDIA GPU) and off elsewhere, as the check itself decides on a CPU.

Every ``--copy-every`` epochs and at the end, a stripped (fp16, no optimizer) copy of ``last.pt``,
``best.pt`` and the run's ``results.csv``/``args.yaml`` go to ``--copy-to`` (the device tool's
``$OUT``), so a run cut short still returns its weights. Always trains with ``--no-ship``: the
weights are shipped here, after ``training.evaluate_detector`` has scored them. Example (the
session-24 run; the command that unpacks ``training.pack_everyday``'s zip is in
``weights/emotion/README.md``)::

    python3 -m training.device_train --copy-to "$OUT" -- --base weights/emotion/model.pt \
        --data .gpu/everyday/data.yaml --device 0 --workers 15 --batch 64 --time 0.135 ...
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copy-to", type=Path, required=True, help="folder the checkpoints are copied to")
    parser.add_argument("--copy-every", type=int, default=5, help="epochs between copies of last.pt")
    parser.add_argument("train_detector_args", nargs="*", help="options for training.train_detector")
    return parser.parse_args(argv)


def read_results_csv(trainer: Any) -> dict[str, list[float]]:
    """``BaseTrainer.read_results_csv`` without polars: the csv's columns, as floats."""
    try:
        with open(trainer.csv, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return {key.strip(): [float(row[key]) for row in rows] for key in rows[0]} if rows else {}
    except (OSError, ValueError, KeyError):
        return {}


def patch_ultralytics() -> None:
    """Fill the image's two gaps (module docstring) before a trainer is built."""
    import ultralytics.engine.trainer as trainer_module

    trainer_module.BaseTrainer.read_results_csv = read_results_csv  # type: ignore[method-assign]
    trainer_module.check_amp = amp_without_download


def amp_without_download(model: Any) -> bool:
    """ultralytics' ``check_amp`` answer without its YOLO11n comparison: AMP on CUDA only."""
    return bool(next(model.parameters()).device.type == "cuda")


def copy_run(run: Path, target: Path) -> None:
    """Stripped copies of the run's checkpoints, and its csv/args, into ``target``."""
    from ultralytics.utils.torch_utils import strip_optimizer

    target.mkdir(parents=True, exist_ok=True)
    for name in ("last.pt", "best.pt"):
        if (run / "weights" / name).exists():
            strip_optimizer(run / "weights" / name, str(target / name))
    for name in ("results.csv", "args.yaml"):
        if (run / name).exists():
            shutil.copyfile(run / name, target / name)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from training import train_detector

    patch_ultralytics()
    options = train_detector.parse_args([*args.train_detector_args, "--no-ship"])

    def copy_now(trainer: Any) -> None:
        if (trainer.epoch + 1) % args.copy_every == 0:
            copy_run(Path(trainer.save_dir), args.copy_to)

    run = train_detector.train(options, callbacks={"on_model_save": copy_now})
    copy_run(run, args.copy_to)
    logger.info("run %s copied to %s", run, args.copy_to)


if __name__ == "__main__":
    main()
