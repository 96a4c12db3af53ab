"""How close can any comment get to the reference? What char BLEU-4 / ROUGE-L F mean on these pairs.

Each keyword set of the pair data has several comments, all written by a model for the research
project, and they differ. Scoring one of them against another shows how much of a reference is
wording nobody can predict from the keywords:

- *another comment*: for each held-out pair whose keyword set has ≥ 2 training comments, one of
  those training comments (drawn with ``--seed``) as the prediction;
- *the typical comment*: the training comment most like the others of its keyword set
  (``inference.text.choice.consensus_pick``), the best a lookup of the training pairs could answer;
- *the generator* (``--predictions``, the ``evaluate_generator`` output for the same split): overall and
  on three parts: keyword sets with ≥ 2 training comments, with 1, and never seen in training.

``python -m training.reference_agreement --predictions weights/generators/t5/report/predictions.jsonl``
uses ``train_generator``'s split (seed 42, 300 validation, 500 test pairs), so its parts are the
pairs the generator never trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.text.choice import consensus_pick
from training.data import DEFAULT_DATA, load_pairs, read_jsonl, split_keywords, split_pairs
from training.metrics import bleu_scores, rouge_f_scores

logger = logging.getLogger(__name__)

MAX_CONSENSUS_POOL = 60  # consensus over more comments of one keyword set changes nothing but the time


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="jsonl of {keywords, comment}")
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument(
        "--predictions", type=Path, help="evaluate_generator's {keywords, reference, prediction}"
    )
    parser.add_argument("--seed", type=int, default=42, help="train_generator's split seed")
    parser.add_argument("--val-size", type=float, default=300)
    parser.add_argument("--test-size", type=float, default=500)
    parser.add_argument(
        "--draw-seed", type=int, default=0, help="which training comment is 'another comment'"
    )
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    return parser.parse_args(argv)


def keyword_set(keywords: str) -> str:
    """The keywords in a fixed order: "나무, 기쁨" and "기쁨, 나무" are one set."""
    return ", ".join(sorted(split_keywords(keywords)))


def scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
    bleu = bleu_scores(references, predictions)
    rouge = rouge_f_scores(references, predictions)
    return {
        "pairs": len(references),
        "bleu4": round(bleu["bleu4"], 4),
        "rougeL_f": round(rouge["rougeL_f"], 4),
    }


def agreement(args: argparse.Namespace) -> dict[str, Any]:
    split = split_pairs(load_pairs(args.data), seed=args.seed, validation=args.val_size, test=args.test_size)
    held_out = split.test if args.split == "test" else split.validation
    training: dict[str, list[str]] = defaultdict(list)
    for pair in split.train:
        training[keyword_set(pair.keywords)].append(pair.comment)
    rng = random.Random(args.draw_seed)
    seen = [pair for pair in held_out if len(training[keyword_set(pair.keywords)]) >= 2]
    references = [pair.comment for pair in seen]
    another = [rng.choice(training[keyword_set(pair.keywords)]) for pair in seen]
    typical = [consensus_pick(training[keyword_set(pair.keywords)][:MAX_CONSENSUS_POOL]) for pair in seen]
    table: dict[str, Any] = {
        "split": args.split,
        "held_out_pairs": len(held_out),
        "another_comment": scores(references, another),
        "typical_comment": scores(references, typical),
    }
    if args.predictions:
        table["generator"] = generator_parts(read_jsonl(args.predictions), training)
    return table


def generator_parts(rows: list[dict[str, Any]], training: dict[str, list[str]]) -> dict[str, Any]:
    """The generator's scores overall and by how often its keyword set occurs in training."""
    parts: dict[str, list[dict[str, Any]]] = {
        "all": rows,
        "seen_2_or_more": [],
        "seen_once": [],
        "unseen": [],
    }
    for row in rows:
        count = len(training.get(keyword_set(row["keywords"]), []))
        parts["seen_2_or_more" if count >= 2 else "seen_once" if count == 1 else "unseen"].append(row)
    return {
        name: {
            **scores([r["reference"] for r in part], [r["prediction"] for r in part]),
            "mean_reference_chars": round(sum(len(r["reference"]) for r in part) / max(1, len(part)), 1),
            "mean_prediction_chars": round(sum(len(r["prediction"]) for r in part) / max(1, len(part)), 1),
            "mean_keywords": round(
                sum(len(split_keywords(r["keywords"])) for r in part) / max(1, len(part)), 2
            ),
        }
        for name, part in parts.items()
        if part
    }


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        table = agreement(args)
    except (OSError, ValueError, KeyError) as exc:
        logger.error("reference agreement failed: %s", exc)
        return 1
    text = json.dumps(table, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
