"""Evaluate a generator folder the way the bot uses it, with the research project's scores.

    python -m training.evaluate_generator --generator t5 --data weights/generators/t5/report/test.jsonl \\
        --predictions /tmp/t5_pred.jsonl --report weights/generators/t5/report

One comment per input line with the metadata's deterministic ``eval_generation``; scores: char-level
BLEU-1..4, METEOR, ROUGE-1/2/L F (see ``training.metrics``), emoji share, object-keyword coverage
(all inputs, keyword sets seen / not seen in training when the data has a ``seen`` flag, and
inputs rebuilt with held-out object names the model never saw), distinct share, garbled outputs,
latency per comment at batch 1 and 16, and a check of the sampled ``generation`` the bot uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inference.errors import UnknownGeneratorError
from inference.models.generators import CommentGenerator
from inference.models.registry import GenerationConfig, GeneratorEntry, discover_generators, resolve_generator
from inference.models.runtime import resolve_device
from inference.settings import DEFAULT_WEIGHTS_DIR
from training.augment import unseen_keyword_pairs
from training.data import Pair, iter_pair_rows, object_keywords
from training.metrics import (
    RESEARCH_SCORES,
    bleu_scores,
    count_garbled,
    has_emoji,
    keyword_coverage,
    rouge_f_scores,
    score_predictions,
)
from training.spread import Scored, intervals, resample_weights

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge1_f", "rouge2_f", "rougeL_f")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--generator", required=True, help="generator name (folder under <weights-dir>/generators)"
    )
    parser.add_argument("--data", type=Path, required=True, help="jsonl of {keywords, comment[, seen]}")
    parser.add_argument("--predictions", type=Path, help="write {keywords, reference, prediction} jsonl here")
    parser.add_argument("--report", type=Path, help="write metrics.json and metrics.md here")
    parser.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--limit", type=int, default=0, help="first N lines only (0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--latency-runs", type=int, default=40, help="comments timed at batch 1")
    parser.add_argument(
        "--sampled-runs", type=int, default=0, help="inputs for the sampled-generation check (0: all)"
    )
    parser.add_argument(
        "--samples-per-input", type=int, default=5, help="sampled comments per input (0: no sampled check)"
    )
    parser.add_argument("--num-beams", type=int, help="override eval_generation.num_beams")
    parser.add_argument("--no-repeat-ngram", type=int, help="override eval_generation.no_repeat_ngram_size")
    parser.add_argument("--length-penalty", type=float, help="override (beam search only)")
    parser.add_argument("--update-metadata", action="store_true", help="store the metrics in generator.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def read_rows(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    for row in iter_pair_rows(path):
        rows.append({"keywords": row["keywords"], "comment": row["comment"], "seen": row.get("seen")})
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise ValueError(f"{path}: no pairs")
    return rows


def eval_config(entry: GeneratorEntry, args: argparse.Namespace) -> GenerationConfig:
    overrides: dict[str, Any] = {}
    if args.num_beams is not None:
        overrides["num_beams"] = args.num_beams
    if args.no_repeat_ngram is not None:
        overrides["no_repeat_ngram_size"] = args.no_repeat_ngram
    if args.length_penalty is not None:
        overrides["length_penalty"] = args.length_penalty
    return entry.meta.eval_generation.model_copy(update=overrides)


def with_eval_generation(entry: GeneratorEntry, config: GenerationConfig) -> GeneratorEntry:
    meta = entry.meta.model_copy(update={"eval_generation": config})
    return entry.model_copy(update={"meta": meta})


def generate_all(
    generator: CommentGenerator, keywords: Sequence[str], batch_size: int, *, sample: bool = False
) -> list[str]:
    """The worker's own generation code: deterministic ``eval_generation`` unless ``sample``."""
    predictions: list[str] = []
    for start in range(0, len(keywords), batch_size):
        predictions.extend(generator.generate(keywords[start : start + batch_size], sample=sample))
    return predictions


def measure_latency(
    generator: CommentGenerator, keywords: Sequence[str], runs: int, *, sample: bool = False
) -> dict[str, float]:
    """Median milliseconds per comment at batch 1 and at batch 16 (after one warm-up call each),
    with the deterministic ``eval_generation`` or, ``sample=True``, the bot's sampled ``generation``."""
    generator.generate(keywords[:1], sample=sample)
    singles = []
    for text in list(keywords)[: max(1, runs)]:
        start = time.perf_counter()
        generator.generate([text], sample=sample)
        singles.append((time.perf_counter() - start) * 1000)
    batch = [keywords[i % len(keywords)] for i in range(16)]
    generator.generate(batch, sample=sample)
    per_comment = []
    for offset in range(0, max(16, min(len(keywords), 5 * 16)), 16):
        batch = [keywords[(offset + i) % len(keywords)] for i in range(16)]
        start = time.perf_counter()
        generator.generate(batch, sample=sample)
        per_comment.append((time.perf_counter() - start) * 1000 / 16)
    suffix = "_sampled" if sample else ""
    return {
        f"latency_p50_ms_batch1{suffix}": statistics.median(singles),
        f"latency_p50_ms_batch16{suffix}": statistics.median(per_comment),
    }


def draw_checks(
    generator: CommentGenerator, keywords: Sequence[str], draws: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Over every comment of ``draws`` (one list per run over ``keywords``): objects named, garbled,
    emoji; and, with two runs or more, how often the second run gave another comment."""
    flat = [comment for draw in draws for comment in draw]
    flat_keywords = list(keywords) * len(draws)
    prompts = generator.prompts(keywords) * len(draws)
    checks = {
        "keyword_coverage": keyword_coverage(flat_keywords, flat)[0],
        "garbled": float(count_garbled(flat, flat_keywords, prompts)),
        "emoji_share": statistics.fmean(has_emoji(comment) for comment in flat),
    }
    if len(draws) > 1:
        checks["differs_on_rerun"] = statistics.fmean(a != b for a, b in zip(draws[0], draws[1], strict=True))
    return checks


def sampled_check(
    generator: CommentGenerator,
    keywords: Sequence[str],
    references: Sequence[str],
    draws: int,
    unseen_keywords: Sequence[str] = (),
) -> dict[str, float]:
    """The bot's sampled decoding, ``draws`` comments per input: every one must pass the post-check,
    have an emoji and name the objects (also held-out names); how varied, and how close to the
    references, are they?"""
    outputs = [generate_all(generator, keywords, 16, sample=True) for _ in range(draws)]
    metrics = {f"sampled_{name}": value for name, value in draw_checks(generator, keywords, outputs).items()}
    metrics |= {
        "sampled_bleu4": statistics.fmean(bleu_scores(references, draw)["bleu4"] for draw in outputs),
        "sampled_rougeL_f": statistics.fmean(
            rouge_f_scores(references, draw)["rougeL_f"] for draw in outputs
        ),
        "sampled_distinct_per_input": statistics.fmean(
            len(set(per_input)) / draws for per_input in zip(*outputs, strict=True)
        ),
        "sampled_draws": float(draws),
        "sampled_count": float(draws * len(keywords)),
    }
    if unseen_keywords:
        unseen = [generate_all(generator, unseen_keywords, 16, sample=True) for _ in range(draws)]
        checks = draw_checks(generator, unseen_keywords, unseen)
        metrics["sampled_keyword_coverage_unseen"] = checks["keyword_coverage"]
        metrics["sampled_garbled_unseen"] = checks["garbled"]
    return metrics


def spread_of(references: Sequence[str], predictions: Sequence[str], seed: int) -> dict[str, float]:
    """Bootstrap 95% intervals of BLEU-4 and ROUGE-L F over the evaluated pairs (``training.spread``)."""
    found = intervals(Scored.of(references, predictions), resample_weights(len(references), 1000, seed))
    return {
        f"{name}_ci95_{end}": getattr(interval, end)
        for name, interval in found.items()
        for end in ("low", "high")
    }


def format_table(name: str, metrics: dict[str, float]) -> str:
    header = "| model | " + " | ".join(TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    rows = {name: metrics, **RESEARCH_SCORES}
    for label, values in rows.items():
        cells = [f"{values[c]:.4f}" if c in values else "–" for c in TABLE_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    extra = [
        ("emoji share", "emoji_share"),
        ("all object keywords mentioned", "keyword_coverage"),
        ("… keyword set seen in training", "keyword_coverage_seen_sets"),
        ("… keyword set not seen in training", "keyword_coverage_novel_sets"),
        ("… held-out (unseen) object names", "keyword_coverage_unseen"),
        ("distinct share", "distinct_share"),
        ("garbled", "garbled"),
        ("latency p50 ms/comment, batch 1", "latency_p50_ms_batch1"),
        ("latency p50 ms/comment, batch 16", "latency_p50_ms_batch16"),
        ("sampled (bot): latency p50 ms/comment, batch 1", "latency_p50_ms_batch1_sampled"),
        ("sampled (bot): latency p50 ms/comment, batch 16", "latency_p50_ms_batch16_sampled"),
        ("sampled: BLEU-4 (mean over draws)", "sampled_bleu4"),
        ("sampled: ROUGE-L F (mean over draws)", "sampled_rougeL_f"),
        ("sampled: garbled", "sampled_garbled"),
        ("sampled: garbled, held-out object names", "sampled_garbled_unseen"),
        ("sampled: emoji share", "sampled_emoji_share"),
        ("sampled: all object keywords", "sampled_keyword_coverage"),
        ("sampled: … held-out (unseen) object names", "sampled_keyword_coverage_unseen"),
        ("sampled: distinct comments per input (share of draws)", "sampled_distinct_per_input"),
        ("sampled: differs on rerun", "sampled_differs_on_rerun"),
        ("bootstrap 95% interval, BLEU-4 (low)", "bleu4_ci95_low"),
        ("bootstrap 95% interval, BLEU-4 (high)", "bleu4_ci95_high"),
        ("bootstrap 95% interval, ROUGE-L F (low)", "rougeL_f_ci95_low"),
        ("bootstrap 95% interval, ROUGE-L F (high)", "rougeL_f_ci95_high"),
    ]
    lines += ["", "| check | value |", "|---|---|"]
    lines += [f"| {label} | {metrics[key]:.4g} |" for label, key in extra if key in metrics]
    return "\n".join(lines)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    entry = resolve_generator(args.generator, discover_generators(args.weights_dir / "generators"))
    config = eval_config(entry, args)
    generator = CommentGenerator.load(with_eval_generation(entry, config), resolve_device(args.device))
    rows = read_rows(args.data, args.limit)
    keywords = [r["keywords"] for r in rows]
    references = [r["comment"] for r in rows]
    started = time.perf_counter()
    predictions = generate_all(generator, keywords, args.batch_size)
    logger.info("%d comments in %.1f s", len(predictions), time.perf_counter() - started)
    prompts = generator.prompts(keywords)  # as the model saw them (slot tokens included)
    metrics: dict[str, Any] = score_predictions(keywords, references, predictions, prompts)
    metrics.update(spread_of(references, predictions, args.seed))

    for flag, suffix in ((True, "seen_sets"), (False, "novel_sets")):
        subset = [(k, p) for r, k, p in zip(rows, keywords, predictions, strict=True) if r["seen"] is flag]
        if subset:
            coverage, counted = keyword_coverage([k for k, _ in subset], [p for _, p in subset])
            metrics[f"keyword_coverage_{suffix}"] = coverage
            metrics[f"keyword_inputs_{suffix}"] = float(counted)

    holdout = list(entry.meta.training.get("holdout_object_names", []))
    unseen_rows: list[Pair] = []
    unseen_predictions: list[str] = []
    if holdout:
        pairs = [Pair(k, c) for k, c in zip(keywords, references, strict=True) if object_keywords(k)]
        unseen_rows = unseen_keyword_pairs(pairs, holdout, seed=args.seed)
        unseen_keywords = [p.keywords for p in unseen_rows]
        unseen_predictions = generate_all(generator, unseen_keywords, args.batch_size)
        coverage, counted = keyword_coverage(unseen_keywords, unseen_predictions)
        metrics["keyword_coverage_unseen"] = coverage
        metrics["keyword_inputs_unseen"] = float(counted)
        unseen_prompts = generator.prompts(unseen_keywords)
        metrics["garbled_unseen"] = float(count_garbled(unseen_predictions, unseen_keywords, unseen_prompts))

    metrics.update(measure_latency(generator, keywords, args.latency_runs))
    metrics.update(measure_latency(generator, keywords, args.latency_runs, sample=True))
    if args.samples_per_input > 0:
        limit = args.sampled_runs or len(keywords)
        unseen_keywords = [p.keywords for p in unseen_rows]
        metrics.update(
            sampled_check(
                generator,
                keywords[:limit],
                references[:limit],
                args.samples_per_input,
                unseen_keywords[:limit],
            )
        )
    metrics["eval_generation"] = config.model_dump()
    metrics["threads"] = torch.get_num_threads()
    metrics["data"] = str(args.data)

    if args.predictions:
        write_predictions(args.predictions, keywords, references, predictions)
        if unseen_rows:
            unseen_path = args.predictions.with_name(args.predictions.stem + "_unseen.jsonl")
            write_predictions(
                unseen_path,
                [p.keywords for p in unseen_rows],
                [p.comment for p in unseen_rows],
                unseen_predictions,
            )
    table = format_table(entry.name, metrics)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
        (args.report / "metrics.md").write_text(table + "\n", encoding="utf-8")
    if args.update_metadata:
        store_metrics(entry, metrics)
    print(table)
    return metrics


def write_predictions(
    path: Path, keywords: Sequence[str], references: Sequence[str], predictions: Sequence[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for kw, ref, pred in zip(keywords, references, predictions, strict=True):
            handle.write(
                json.dumps({"keywords": kw, "reference": ref, "prediction": pred}, ensure_ascii=False) + "\n"
            )


def store_metrics(entry: GeneratorEntry, metrics: dict[str, Any]) -> None:
    """Keep the test scores beside the weights (``training.metrics`` in generator.json)."""
    meta = entry.meta.model_copy(deep=True)
    meta.training["metrics"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    (entry.path / "generator.json").write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        evaluate(args)
    except (OSError, ValueError, UnknownGeneratorError) as exc:
        logger.error("evaluation failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
