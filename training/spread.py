"""How much a score moves with the sample it is measured on: bootstrap intervals for char BLEU-4 and
ROUGE-L F, alone and as paired differences between two prediction sets of the same inputs.

Corpus BLEU is not a mean of sentence scores, so each comment is reduced once to its clipped n-gram
matches and counts and its lengths (nltk's own ``modified_precision``), and every resample sums
those: the full-sample value equals ``training.metrics.bleu_scores`` exactly (a test checks it), and
a thousand resamples take milliseconds. ROUGE-L F is a mean of per-comment scores.

What this measures is the noise of the evaluation set (which 300 or 500 pairs were drawn), the part
that decides whether a decoding change "helps". The other part, the training seed and split, needs
models trained again: ``training.split_spread`` scores trainings of one recipe on several splits.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nltk.translate.bleu_score import modified_precision

from training.metrics import rouge_l_per_pair

MAX_N = 4
CONFIDENCE = 0.95


def bleu_statistics(references: Sequence[str], predictions: Sequence[str]) -> np.ndarray:
    """Per comment: matches and counts for n = 1..4, prediction length, reference length (N × 10)."""
    rows = []
    for ref, pred in zip(references, predictions, strict=True):
        row: list[int] = []
        for n in range(1, MAX_N + 1):
            precision = modified_precision([ref], pred, n)
            row += [precision.numerator, precision.denominator]
        rows.append([*row, len(pred), len(ref)])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 * MAX_N + 2)


def bleu4_from_sums(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU-4 as nltk computes it (uniform weights, no smoothing) from summed statistics
    (… × 10): 0 without a matching character; an order with no match counts as the smallest float
    (nltk's ``method0``), which makes the score vanishingly small, not 0."""
    matches, counts = sums[..., 0 : 2 * MAX_N : 2], sums[..., 1 : 2 * MAX_N : 2]
    hyp_len, ref_len = sums[..., 2 * MAX_N], sums[..., 2 * MAX_N + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(matches > 0, matches / np.maximum(counts, 1), sys.float_info.min)
        log_brevity = np.where(hyp_len < ref_len, 1.0 - ref_len / np.maximum(hyp_len, 1), 0.0)
        score = np.exp(np.log(precision).mean(axis=-1) + log_brevity)
    return np.where((matches[..., 0] > 0) & (hyp_len > 0), score, 0.0)


@dataclass(frozen=True, slots=True)
class Interval:
    value: float  # on the whole sample
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


@dataclass(frozen=True, slots=True)
class Scored:
    """One prediction set reduced to what the bootstrap needs."""

    bleu: np.ndarray  # N × 10 statistics
    rouge_l: np.ndarray  # N per-comment F

    @classmethod
    def of(cls, references: Sequence[str], predictions: Sequence[str]) -> Scored:
        rouge = np.asarray(rouge_l_per_pair(references, predictions), dtype=np.float64)
        return cls(bleu_statistics(references, predictions), rouge)


def resample_weights(size: int, resamples: int, seed: int) -> np.ndarray:
    """How often each item is drawn in each resample (resamples × size), shared by paired sets."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(size, np.full(size, 1.0 / size), size=resamples).astype(np.float64)


Scores = dict[str, tuple[float, np.ndarray]]  # per score: value on the whole sample, value per resample


def scores(scored: Scored, weights: np.ndarray) -> Scores:
    """Each score on the whole sample and on every resample."""
    return {
        "bleu4": (float(bleu4_from_sums(scored.bleu.sum(axis=0))), bleu4_from_sums(weights @ scored.bleu)),
        "rougeL_f": (float(scored.rouge_l.mean()), weights @ scored.rouge_l / weights.sum(axis=1)),
    }


def intervals(scored: Scored, weights: np.ndarray) -> dict[str, Interval]:
    return intervals_of(scores(scored, weights))


def intervals_of(found: Scores) -> dict[str, Interval]:
    return {name: interval_of(value, resampled) for name, (value, resampled) in found.items()}


def paired_differences(new: Scored, old: Scored, weights: np.ndarray) -> dict[str, dict[str, float]]:
    return differences(scores(new, weights), scores(old, weights))


def differences(new: Scores, old: Scores) -> dict[str, dict[str, float]]:
    """``new − old`` on the same resamples, with the share of resamples where ``new`` is better."""
    out: dict[str, dict[str, float]] = {}
    for name, (new_value, new_resampled) in new.items():
        old_value, old_resampled = old[name]
        delta = new_resampled - old_resampled
        interval = interval_of(new_value - old_value, delta)
        out[name] = {**interval.as_dict(), "share_better": round(float((delta > 0).mean()), 3)}
    return out


def interval_of(value: float, resampled: np.ndarray) -> Interval:
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(value, float(low), float(high))
