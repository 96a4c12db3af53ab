"""Generators vs templates for photos where no face shows an emotion.

The comment data always starts from an emotion, so the question is whether the generators, given
only object keywords (or nothing), still read a mood into the photo. For the object keyword sets of
the VOC val photos (the labelled objects covering ≥ 2% of the photo, largest first, at most three;
``person`` never counts) and the empty set, this samples ``--samples`` comments per prompt from each
generator — as the bot does — and from ``inference.text.templates.honest_comment``, and reports:

- ``mood_claim_share``: comments that mention an expression or a sad / angry / scared mood;
- ``feeling_claim_share``: comments that read any feeling into the photo, joy and smiles included
  (``inference.text.templates.reads_feeling``);
- ``template_share``: comments a template wrote (the bot's path, ``<name> (bot)``: a generator's
  comment that fails the post-check twice is replaced by one);
- ``objects_named_share``: comments that name every object keyword;
- ``garbled``: comments the generators' post-check rejects;
- ``distinct_share``: distinct comments among the samples of one prompt (variety).

Example::

    python -m training.evaluate_honesty --objects ../shared/data/objects --out weights/generators/honesty.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from inference.models.runtime import set_torch_threads
from inference.results import box_area
from inference.settings import DEFAULT_WEIGHTS_DIR, REPO_ROOT
from inference.text.keywords import format_keywords
from inference.text.labels import object_keyword
from inference.text.templates import claims_mood, honest_comment, reads_feeling
from training.everyday_eval import OBJECT_MIN_SHARE, load_photos

logger = logging.getLogger(__name__)

MAX_OBJECTS = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "objects")
    parser.add_argument("--everyday", type=Path, default=REPO_ROOT / "data" / "everyday")
    parser.add_argument("--generators", type=Path, default=DEFAULT_WEIGHTS_DIR / "generators")
    parser.add_argument("--samples", type=int, default=5, help="sampled comments per prompt")
    parser.add_argument("--prompts", type=int, default=200, help="distinct keyword sets (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (a rerun gives the same report)")
    parser.add_argument("--out", type=Path, default=None, help="write the report here as JSON")
    return parser.parse_args(argv)


def keyword_sets(everyday: Path, objects: Path, limit: int) -> list[list[str]]:
    """Distinct object keyword sets of the VOC val photos, plus the empty set, in a fixed order."""
    seen: dict[tuple[str, ...], None] = {(): None}
    for photo in load_photos(everyday, objects):
        big = sorted(
            (box for box in photo.objects if box_area(box[1]) >= OBJECT_MIN_SHARE * photo.area),
            key=lambda item: box_area(item[1]),
            reverse=True,
        )
        keywords: list[str] = []
        for name, _ in big:
            keyword = object_keyword(name)
            if keyword is not None and keyword not in keywords:
                keywords.append(keyword)
        seen.setdefault(tuple(keywords[:MAX_OBJECTS]), None)
    sets = [list(key) for key in seen]
    return sets[:limit] if limit else sets


Written = tuple[str, bool]  # a comment and whether a template wrote it


def judge(
    prompts: Sequence[list[str]], write: Callable[[list[list[str]]], list[Written]], samples: int
) -> dict[str, Any]:
    """Sample ``samples`` comments per prompt with ``write`` and score them."""
    from inference.models.generators import comment_problem

    total = mood = feeling = named = garbled = distinct = templates = 0
    examples: list[dict[str, Any]] = []
    outputs = [write(list(prompts)) for _ in range(samples)]
    for index, keywords in enumerate(prompts):
        written = [batch[index] for batch in outputs]
        texts = [text for text, _ in written]
        distinct += len(set(texts))
        templates += sum(by_template for _, by_template in written)
        for text in texts:
            total += 1
            mood += claims_mood(text)
            feeling += reads_feeling(text)
            named += all(keyword in text for keyword in keywords)
            garbled += comment_problem(text, keywords) is not None
        if len(examples) < 6:
            examples.append({"keywords": keywords, "comment": texts[0]})
    return {
        "comments": total,
        "mood_claim_share": round(mood / max(1, total), 4),
        "feeling_claim_share": round(feeling / max(1, total), 4),
        "objects_named_share": round(named / max(1, total), 4),
        "garbled": garbled,
        "distinct_share": round(distinct / max(1, total), 4),
        "template_share": round(templates / max(1, total), 4),
        "examples": examples,
    }


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    set_torch_threads(args.threads)
    from inference.models.generators import GeneratorSet

    prompts = keyword_sets(args.everyday, args.objects, args.prompts)
    generators = GeneratorSet.from_dir(args.generators, "cpu", "t5")
    rng = random.Random(args.seed)
    report: dict[str, Any] = {"prompts": len(prompts), "samples_per_prompt": args.samples}
    report["template"] = judge(
        prompts, lambda ps: [(honest_comment(k, False, rng), True) for k in ps], args.samples
    )
    for name in generators.names():
        # What the model itself writes (its candidates and pick), no post-check retry or template.
        generator = generators.generators[name]

        def write(batch: list[list[str]], generator: Any = generator) -> list[Written]:
            texts: list[str] = generator.generate([format_keywords(k) for k in batch], sample=True)
            return [(text, False) for text in texts]

        def bot(batch: list[list[str]], name: str = name) -> list[Written]:
            return [(c.text, c.fallback) for c in generators.comments(name, batch, sample=True)]

        torch.manual_seed(args.seed)  # each generator draws the same way whatever ran before it
        report[name] = judge(prompts, write, args.samples)
        torch.manual_seed(args.seed)
        generators.rng.seed(args.seed)
        report[f"{name} (bot)"] = judge([k for k in prompts if k], bot, args.samples)
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
