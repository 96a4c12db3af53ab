"""How far a test score moves when the split and the training change (repeated random splits).

``training.spread`` measures how a score moves with the pairs it is measured on, for one trained
model. Two *trainings* differ by more than that: another split gives other training and test pairs,
and another run another start. This scores generator folders trained with one recipe on different
splits (``train_generator --seed S``, each with its own ``report/test.jsonl``), each on its own
held-out split with its deterministic ``eval_generation``, and reports the scores per folder, their
mean and standard deviation, and the mean bootstrap half-width of a single score beside them::

    python -m training.split_spread runs/split1 runs/split2 runs/split3 runs/split4 \\
        --out weights/generators/split_spread.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inference.models.generators import CommentGenerator
from inference.models.registry import discover_generators
from training.evaluate_generator import generate_all, read_rows, spread_of
from training.metrics import bleu_scores, rouge_f_scores

logger = logging.getLogger(__name__)

SCORES = ("bleu4", "rougeL_f")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", type=Path, nargs="+", help="generator folders, one per split")
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    return parser.parse_args(argv)


def score_folder(folder: Path, split: str, batch_size: int, seed: int) -> dict[str, Any]:
    """One folder's deterministic comments on its own held-out split, scored."""
    entry = discover_generators(folder.parent)[folder.name]
    generator = CommentGenerator.load(entry, "cpu")
    rows = read_rows(folder / "report" / f"{split}.jsonl", 0)
    references = [row["comment"] for row in rows]
    predictions = generate_all(generator, [row["keywords"] for row in rows], batch_size)
    found = spread_of(references, predictions, seed)
    return {
        "folder": str(folder),
        "split_seed": entry.meta.training.get("split", {}).get("seed"),
        "pairs": len(rows),
        "bleu4": bleu_scores(references, predictions)["bleu4"],
        "rougeL_f": rouge_f_scores(references, predictions)["rougeL_f"],
        **{
            f"{name}_half_width": (found[f"{name}_ci95_high"] - found[f"{name}_ci95_low"]) / 2
            for name in SCORES
        },
    }


def summary(folds: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (n − 1), range and mean bootstrap half-width of each score."""
    out: dict[str, dict[str, float]] = {}
    for name in SCORES:
        values = [fold[name] for fold in folds]
        out[name] = {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
            "bootstrap_half_width": statistics.fmean(fold[f"{name}_half_width"] for fold in folds),
        }
    return out


def table(folds: Sequence[dict[str, Any]], overall: dict[str, dict[str, float]]) -> str:
    lines = ["| folder | split seed | BLEU-4 | ROUGE-L F |", "|---|---|---|---|"]
    lines += [
        f"| {f['folder']} | {f['split_seed']} | {f['bleu4']:.4f} | {f['rougeL_f']:.4f} |" for f in folds
    ]
    for key in ("mean", "sd", "bootstrap_half_width"):
        lines.append(f"| {key} | | {overall['bleu4'][key]:.4f} | {overall['rougeL_f'][key]:.4f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folds = [score_folder(folder, args.split, args.batch_size, args.seed) for folder in args.folders]
    report = {"split": args.split, "folds": folds, "summary": summary(folds)}
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table(folds, report["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
