"""Teacher comments for the training split: what the generators write for its prompts, one picked per pair.

    python -m training.distill_comments --out data/distill --generators t5 gpt2 --threads 2
    python -m training.train_generator --arch t5 --base weights/generators/t5 \\
        --extra-pairs data/distill/closest.jsonl …

Sequence-level distillation (Kim & Rush 2016): a small model learns more easily from comments a model
writes than from people's, whose wording varies more than 5,000 pairs can teach. For every pair of the
**training** split (the same ``--seed`` / sizes as ``train_generator``, so nothing of validation or test
is used) each generator writes its deterministic comment and ``--draws`` sampled ones, exactly as the bot
would (``CommentGenerator.generate``). A candidate counts only when it keeps a comment's promises (not
garbled, every object named, an emoji); among those, two picks are written:

- ``closest.jsonl``: the candidate most like the pair's own comment (chrF + word LCS F, the likeness the
  consensus pick uses): the person's comment in words a model writes ("seq-inter" in Kim & Rush);
- ``consensus.jsonl``: the candidate most like the other candidates (minimum Bayes risk), no reference used.

Each row is ``{keywords, comment, reference}``; ``train_generator --extra-pairs`` adds rows to the training
split only and refuses any whose (keywords, reference) is not a training pair. ``candidates.jsonl`` keeps
every candidate and is appended batch by batch, so a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from inference.models.generators import CommentGenerator
from inference.models.registry import discover_generators, resolve_generator
from inference.settings import DEFAULT_WEIGHTS_DIR
from inference.text.choice import consensus_pick, has_emoji, likeness
from training.data import DEFAULT_DATA, Pair, load_pairs, read_jsonl, split_pairs, write_jsonl
from training.metrics import is_garbled, mentions_all_objects

logger = logging.getLogger(__name__)

CANDIDATES_FILE = "candidates.jsonl"
PICKS = ("closest", "consensus")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for candidates.jsonl and the picks")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="jsonl of {keywords, comment}")
    parser.add_argument("--generators", nargs="+", default=["t5", "gpt2"], help="teacher generator names")
    parser.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--draws", type=int, default=2, help="sampled comments per generator and pair")
    parser.add_argument("--seed", type=int, default=42, help="train_generator's split seed")
    parser.add_argument("--val-size", type=float, default=300)
    parser.add_argument("--test-size", type=float, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="first N training pairs only (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    return parser.parse_args(argv)


def training_split(args: argparse.Namespace) -> list[Pair]:
    pairs = load_pairs(args.data)
    train = split_pairs(pairs, seed=args.seed, validation=args.val_size, test=args.test_size).train
    return train[: args.limit] if args.limit else train


def keeps_promises(comment: str, keywords: str) -> bool:
    """Usable as a training target: not garbled, every object named, an emoji."""
    named = mentions_all_objects(keywords, comment)
    return has_emoji(comment) and named and not is_garbled(comment, keywords, "")


def write_candidates(
    teachers: Sequence[CommentGenerator], pairs: Sequence[Pair], path: Path, draws: int, batch_size: int
) -> None:
    """Append every pair's candidates to ``path``, skipping the pairs already there (a resumed run)."""
    done = len(read_jsonl(path)) if path.is_file() else 0
    if done:
        logger.info("%s: %d of %d pairs already written, continuing", path, done, len(pairs))
    path.parent.mkdir(parents=True, exist_ok=True)
    for start in range(done, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        texts = [pair.keywords for pair in batch]
        per_pair: list[list[dict[str, str]]] = [[] for _ in batch]
        for teacher in teachers:
            for sample in [False] + [True] * draws:
                for options, comment in zip(per_pair, teacher.generate(texts, sample=sample), strict=True):
                    options.append({"generator": teacher.name, "sampled": str(sample), "comment": comment})
        with path.open("a", encoding="utf-8") as handle:
            for pair, options in zip(batch, per_pair, strict=True):
                row = {"keywords": pair.keywords, "reference": pair.comment, "candidates": options}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        logger.info("candidates: %d of %d pairs", min(start + batch_size, len(pairs)), len(pairs))


def pick(row: dict[str, Any], how: str) -> str | None:
    """The chosen candidate of one pair, or ``None`` when no candidate keeps its promises."""
    usable = [c["comment"] for c in row["candidates"] if keeps_promises(c["comment"], row["keywords"])]
    usable = list(dict.fromkeys(usable))  # the same comment twice is one candidate
    if not usable:
        return None
    if how == "consensus":
        return consensus_pick(usable) if len(usable) > 2 else usable[0]
    return max(usable, key=lambda comment: likeness(comment, row["reference"]))


def picked_rows(rows: Iterable[dict[str, Any]], how: str) -> list[dict[str, str]]:
    out = []
    for row in rows:
        comment = pick(row, how)
        if comment is not None:
            out.append({"keywords": row["keywords"], "comment": comment, "reference": row["reference"]})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the sampled draws
    pairs = training_split(args)
    available = discover_generators(args.weights_dir / "generators")
    teachers = [CommentGenerator.load(resolve_generator(name, available), "cpu") for name in args.generators]
    candidates = args.out / CANDIDATES_FILE
    write_candidates(teachers, pairs, candidates, args.draws, args.batch_size)
    rows = read_jsonl(candidates)
    for how in PICKS:
        chosen = picked_rows(rows, how)
        write_jsonl(args.out / f"{how}.jsonl", chosen)
        logger.info("%s: %d of %d pairs have a usable candidate", how, len(chosen), len(rows))


if __name__ == "__main__":
    main()
