"""Choose a generator's decoding settings on the validation split only, with the bootstrap spread.

    python -m training.select_decoding --generator t5 --update-metadata
    python -m training.select_decoding --generator gpt2 --beams 1,4,8 --update-metadata

Two choices, each measured on ``report/validation.jsonl`` (never the test split):

* **deterministic** ``eval_generation`` (what the scores are reported with): every combination of
  ``--beams``, ``--picks`` (``first`` = the model's best-ranked beam, ``consensus`` = the beam most
  like the others, ``inference.text.choice``), ``--length-penalties``, ``--early-stopping`` (beam
  search's stop rule: stopping at the first ``num_beams`` endings favours short comments) and
  ``--redraw-penalties`` (a second beam search, ending before every object is named costing more,
  only for the photos where no beam named them all);
* **sampled** ``generation`` (what the bot sends): ``--sample-candidates`` comments drawn per photo,
  the consensus one kept; ``--draws`` runs each, so variety (a rerun gives another comment) counts.

A setting may win only if it garbles nothing, keeps emoji in every comment, names every object in at
least ``--min-coverage`` of the comments (where some setting reaches that; else as often as now) and,
sampled, gives another comment on a rerun at least ``--min-variety`` of the time; among those, the
highest BLEU-4 + ROUGE-L F wins. Every setting gets a paired bootstrap interval of its difference to the
current one (``training.spread``), so a 0.005 "gain" inside the noise is visible as such. The test
split is then scored once with ``training.evaluate_generator``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.models.generators import CommentGenerator
from inference.models.registry import GenerationConfig, GeneratorEntry, discover_generators, resolve_generator
from inference.models.runtime import resolve_device
from inference.settings import DEFAULT_WEIGHTS_DIR, REPO_ROOT
from training.evaluate_generator import draw_checks, generate_all, read_rows
from training.spread import Scored, Scores, differences, intervals_of, resample_weights, scores

logger = logging.getLogger(__name__)

RESAMPLES = 1000


@dataclass
class Trial:
    label: str
    config: GenerationConfig
    sampled: bool
    predictions: list[list[str]] = field(default_factory=list)  # one list per draw
    metrics: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", required=True)
    parser.add_argument("--data", type=Path, help="validation jsonl (default: the generator's report/)")
    parser.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--beams", default="4,8", help="beam widths to try (1 = greedy)")
    parser.add_argument("--picks", default="first,consensus")
    parser.add_argument("--length-penalties", default="", help="default: the current one only")
    parser.add_argument(
        "--early-stopping",
        default="",
        help="beam search's stop rule to try: true (stop at num_beams finished), false (stop when no "
        "longer beam can win under the length penalty), never; default: the current one only",
    )
    parser.add_argument(
        "--redraw-penalties",
        default="",
        help="beam search again, with this slot-end penalty, where no beam names every object "
        "(off = never; e.g. off,12,20); default: the current setting only",
    )
    parser.add_argument("--sample-candidates", default="4,8", help="comments drawn per photo (sampled)")
    parser.add_argument("--draws", type=int, default=2, help="runs of each sampled setting")
    parser.add_argument("--min-coverage", type=float, default=0.90, help="objects named, where reachable")
    parser.add_argument(
        "--kinds", default="eval_generation,generation", help="which settings to choose (both by default)"
    )
    parser.add_argument("--coverage-slack", type=float, default=0.02)
    parser.add_argument(
        "--min-variety", type=float, default=0.90, help="sampled: share of reruns that differ"
    )
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--report", type=Path, help="default: the generator's report/ folder")
    parser.add_argument(
        "--update-metadata", action="store_true", help="write the winners into generator.json"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def deterministic_trials(current: GenerationConfig, args: argparse.Namespace) -> list[Trial]:
    penalties = [float(p) for p in args.length_penalties.split(",") if p] or [
        float(getattr(current, "length_penalty", 1.0))
    ]
    stops = [_stop_rule(rule) for rule in args.early_stopping.split(",") if rule] or [
        getattr(current, "early_stopping", False)
    ]
    redraws = [_redraw(word) for word in args.redraw_penalties.split(",") if word] or [
        current.redraw_end_penalty if current.redraw_incomplete else None
    ]
    trials = [Trial("current", current, sampled=False)]
    grid = itertools.product(_ints(args.beams), args.picks.split(","), penalties, stops, redraws)
    for beams, pick, penalty, stop, redraw in grid:
        if beams == 1 and pick == "consensus":
            continue  # one candidate: nothing to agree on
        update: dict[str, Any] = {"num_beams": beams, "pick": pick}
        update |= {"redraw_incomplete": redraw is not None, "redraw_end_penalty": redraw}
        if beams > 1:  # beam search only
            update |= {"length_penalty": penalty, "early_stopping": stop}
        config = current.model_copy(update=update)
        if all(config != trial.config for trial in trials):  # greedy search has no stop rule to vary
            label = f"beams {beams}, {pick}"
            if beams > 1:
                label += f", length penalty {penalty}, early stopping {str(stop).lower()}"
            if redraw is not None:
                label += f", again at slot-end penalty {redraw}"
            trials.append(Trial(label, config, sampled=False))
    return trials


def _redraw(word: str) -> float | None:
    """``--redraw-penalties`` words: ``off`` (no second search) or the second search's penalty."""
    if word == "off":
        return None
    try:
        return float(word)
    except ValueError:
        raise SystemExit(f"--redraw-penalties takes off or numbers, not {word!r}") from None


def _stop_rule(text: str) -> bool | str:
    """``--early-stopping`` words as ``generate`` takes them."""
    rules: dict[str, bool | str] = {"true": True, "false": False, "never": "never"}
    if text not in rules:
        raise SystemExit(f"--early-stopping takes true, false or never, not {text!r}")
    return rules[text]


def sampled_trials(current: GenerationConfig, args: argparse.Namespace) -> list[Trial]:
    trials = [Trial("current", current, sampled=True)]
    for count, pick in itertools.product(_ints(args.sample_candidates), args.picks.split(",")):
        config = current.model_copy(update={"candidates": count, "pick": pick})
        if config != current and not (count == 1 and pick == "consensus"):
            trials.append(Trial(f"{count} drawn, {pick}", config, sampled=True))
    return trials


def run_trial(
    entry: GeneratorEntry, trial: Trial, keywords: Sequence[str], args: argparse.Namespace, device: str
) -> None:
    field_name = "generation" if trial.sampled else "eval_generation"
    meta = entry.meta.model_copy(update={field_name: trial.config})
    generator = CommentGenerator.load(entry.model_copy(update={"meta": meta}), device)
    started = time.perf_counter()
    for _ in range(args.draws if trial.sampled else 1):
        trial.predictions.append(generate_all(generator, keywords, args.batch_size, sample=trial.sampled))
    trial.metrics["seconds"] = round(time.perf_counter() - started, 1)
    trial.metrics |= draw_checks(generator, keywords, trial.predictions)


def score_trials(trials: list[Trial], references: Sequence[str], seed: int) -> None:
    """Scores with intervals (averaged over a sampled setting's draws), and each trial's difference
    to the first ("current") one on the same resamples."""
    weights = resample_weights(len(references), RESAMPLES, seed)
    baseline: Scores = {}
    for trial in trials:
        found = mean_scores([Scored.of(references, draw) for draw in trial.predictions], weights)
        for name, interval in intervals_of(found).items():
            trial.metrics[name] = round(interval.value, 4)
            trial.metrics[f"{name}_ci95"] = [round(interval.low, 4), round(interval.high, 4)]
        if baseline:
            trial.metrics["vs_current"] = differences(found, baseline)
        baseline = baseline or found


def mean_scores(draws: Sequence[Scored], weights: np.ndarray) -> Scores:
    """Each score of several draws of the same inputs: mean value, mean over draws per resample."""
    per_draw = [scores(draw, weights) for draw in draws]
    return {
        name: (
            float(np.mean([found[name][0] for found in per_draw])),
            np.mean([found[name][1] for found in per_draw], axis=0),
        )
        for name in per_draw[0]
    }


def choose(trials: list[Trial], args: argparse.Namespace) -> Trial:
    """Nothing garbled, emoji kept, a rerun gives another comment (sampled: ``--min-variety``), and
    objects named at least ``--min-coverage`` of the time where any setting gets there (else no worse
    than now, within ``--coverage-slack``); of those, the best BLEU-4 + ROUGE-L F."""
    current = trials[0].metrics
    best_coverage = max(t.metrics["keyword_coverage"] for t in trials)
    if best_coverage >= args.min_coverage:
        coverage_floor = args.min_coverage
    else:
        coverage_floor = current["keyword_coverage"] - args.coverage_slack

    def allowed(trial: Trial) -> bool:
        m = trial.metrics
        varied = not trial.sampled or m.get("differs_on_rerun", 1.0) >= args.min_variety
        return (
            m["garbled"] == 0
            and m["emoji_share"] >= min(1.0, current["emoji_share"])
            and m["keyword_coverage"] >= coverage_floor
            and varied
        )

    candidates = [t for t in trials if allowed(t)] or trials[:1]
    return max(candidates, key=lambda t: t.metrics["bleu4"] + t.metrics["rougeL_f"])


def table(trials: list[Trial], winner: Trial) -> str:
    lines = [
        "| setting | BLEU-4 [95% CI] | ROUGE-L F [95% CI] | Δ BLEU-4 vs current [95% CI] | Δ ROUGE-L F "
        "| objects named | emoji | garbled | rerun differs | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        m = t.metrics
        delta = m.get("vs_current")
        mark = " **(chosen)**" if t is winner else ""
        cells = [
            f"{t.label}{mark}",
            _with_interval(m["bleu4"], m["bleu4_ci95"]),
            _with_interval(m["rougeL_f"], m["rougeL_f_ci95"]),
            _delta(delta["bleu4"]) if delta else "–",
            _delta(delta["rougeL_f"]) if delta else "–",
            f"{m['keyword_coverage']:.3f}",
            f"{m['emoji_share']:.3f}",
            f"{m['garbled']:g}",
            f"{m['differs_on_rerun']:.2f}" if "differs_on_rerun" in m else "–",
            str(m["seconds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _with_interval(value: float, interval: Sequence[float]) -> str:
    return f"{value:.4f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _delta(delta: dict[str, float]) -> str:
    return f"{delta['value']:+.4f} [{delta['low']:+.4f}, {delta['high']:+.4f}]"


def select(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    entry = resolve_generator(args.generator, discover_generators(args.weights_dir / "generators"))
    data = args.data or entry.path / "report" / "validation.jsonl"
    rows = read_rows(data, args.limit)
    keywords = [r["keywords"] for r in rows]
    references = [r["comment"] for r in rows]
    device = resolve_device(args.device)
    report: dict[str, Any] = {"generator": entry.name, "data": shown_path(data), "count": len(rows)}
    winners: dict[str, GenerationConfig] = {}
    sections: list[str] = []
    for kind, trials in (
        ("eval_generation", deterministic_trials(entry.meta.eval_generation, args)),
        ("generation", sampled_trials(entry.meta.generation, args)),
    ):
        if kind not in args.kinds.split(","):
            continue
        for trial in trials:
            run_trial(entry, trial, keywords, args, device)
            logger.info(
                "%s / %s: %s", kind, trial.label, {k: v for k, v in trial.metrics.items() if "ci" not in k}
            )
        score_trials(trials, references, args.seed)
        winner = choose(trials, args)
        winners[kind] = winner.config
        report[kind] = [{"label": t.label, "config": t.config.model_dump(), **t.metrics} for t in trials]
        report[f"{kind}_chosen"] = winner.label
        how = "sampled, as the bot" if kind == "generation" else "deterministic"
        sections.append(
            f"# `{kind}` ({how}) of {entry.name}, chosen on {data.name} ({len(rows)} pairs)\n\n"
            f"{table(trials, winner)}\n"
        )
    out = args.report or entry.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    for kind, section in zip(winners, sections, strict=True):
        (out / f"decoding_{kind}.md").write_text(section, encoding="utf-8")
        print(section)
    report = merged_report(out / "decoding_selection.json", report)
    (out / "decoding_selection.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    if args.update_metadata:
        meta = entry.meta.model_copy(update=winners, deep=True)
        record = meta.training.setdefault("decoding_selection", {})
        record.update({k: report[f"{k}_chosen"] for k in winners} | {"data": shown_path(data)})
        (entry.path / "generator.json").write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return report


def merged_report(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """This run's choices over an earlier run's on the same data (``--kinds`` may choose one at a time)."""
    if not path.is_file():
        return report
    earlier = json.loads(path.read_text(encoding="utf-8"))
    return earlier | report if earlier.get("data") == report["data"] else report


def shown_path(path: Path) -> str:
    """Relative to the repository where it lies inside, so records don't carry this machine's paths."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        select(args)
    except (OSError, ValueError) as exc:
        logger.error("selection failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
