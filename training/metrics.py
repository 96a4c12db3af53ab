"""The research project's scores, reproduced exactly, plus the checks this project adds.

- BLEU-1..4: nltk ``corpus_bleu`` over plain strings, so n-grams are characters; no smoothing.
- METEOR: nltk ``meteor_score`` per comment on whitespace tokens, averaged. nltk looks synonyms up
  in WordNet, whose data cannot be downloaded here and has no Korean entries anyway, so an empty
  WordNet stands in: exact and (Porter-)stem matches count, synonyms never do.
- ROUGE-1/2/L F: the ``rouge`` package called with references first, as the research code did
  (``Rouge().get_scores(references, predictions)``); F is symmetric, so the order only swaps P and R.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rouge import Rouge

from inference.models.generators import comment_problem
from inference.text.choice import has_emoji
from training.data import object_keywords, split_keywords

logger = logging.getLogger(__name__)

BLEU_WEIGHTS: dict[str, tuple[float, ...]] = {
    "bleu1": (1.0,),
    "bleu2": (0.5, 0.5),
    "bleu3": (1 / 3, 1 / 3, 1 / 3),
    "bleu4": (0.25, 0.25, 0.25, 0.25),
}
# The research project's numbers on its own test split, for the comparison table.
RESEARCH_SCORES: dict[str, dict[str, float]] = {
    "research pko-t5-base": {
        "bleu1": 0.6258,
        "bleu4": 0.4105,
        "meteor": 0.2588,
        "rouge1_f": 0.3381,
        "rougeL_f": 0.3164,
    },
    "research GPT-2": {"bleu4": 0.2580, "rougeL_f": 0.2026},
}


class _NoWordNet:
    """Stands in for nltk's WordNet reader: no synonyms for any word (see module docstring)."""

    def synsets(self, *args: object, **kwargs: object) -> list[Any]:
        return []


def bleu_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Character-level corpus BLEU-1..4 exactly as the research: strings in, no smoothing."""
    refs = [[ref] for ref in references]
    with warnings.catch_warnings():  # nltk warns on every zero n-gram count; a score of 0 says it
        warnings.simplefilter("ignore", UserWarning)
        return {
            name: float(corpus_bleu(refs, list(predictions), weights=w)) for name, w in BLEU_WEIGHTS.items()
        }


def meteor(references: Sequence[str], predictions: Sequence[str]) -> float:
    wordnet = _NoWordNet()
    scores = [
        meteor_score([ref.split()], pred.split(), wordnet=wordnet)
        for ref, pred in zip(references, predictions, strict=True)
    ]
    return fmean(scores) if scores else 0.0


def rouge_f_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F averaged over pairs; an empty prediction scores 0 (the package would raise)."""
    per_pair = rouge_per_pair(references, predictions)
    count = max(1, len(per_pair))
    return {
        name: sum(pair[name] for pair in per_pair) / count for name in ("rouge1_f", "rouge2_f", "rougeL_f")
    }


def rouge_l_per_pair(references: Sequence[str], predictions: Sequence[str]) -> list[float]:
    return [pair["rougeL_f"] for pair in rouge_per_pair(references, predictions)]


def rouge_per_pair(references: Sequence[str], predictions: Sequence[str]) -> list[dict[str, float]]:
    """ROUGE-1/2/L F of each pair."""
    rouge = Rouge()
    out = []
    for ref, pred in zip(references, predictions, strict=True):
        if not pred.strip() or not ref.strip():
            out.append({"rouge1_f": 0.0, "rouge2_f": 0.0, "rougeL_f": 0.0})
            continue
        scores = rouge.get_scores([ref], [pred])[0]  # references first, as the research did
        out.append(
            {
                "rouge1_f": scores["rouge-1"]["f"],
                "rouge2_f": scores["rouge-2"]["f"],
                "rougeL_f": scores["rouge-l"]["f"],
            }
        )
    return out


def has_hangul(text: str) -> bool:
    return any("가" <= char <= "힣" for char in text)


def mentions(text: str, keyword: str) -> bool:
    """The keyword occurs in the text, ignoring spaces ("자전거 바퀴" matches "자전거바퀴")."""
    return keyword.replace(" ", "") in text.replace(" ", "")


def mentions_all_objects(keywords: str, text: str) -> bool:
    return all(mentions(text, keyword) for keyword in object_keywords(keywords))


def is_garbled(prediction: str, keywords: str, prompt: str) -> bool:
    """What the bot's post-check rejects (empty, U+FFFD, no Hangul, only the keywords or prompt
    echoed back), plus a prompt template copied into the comment."""
    if comment_problem(prediction, split_keywords(keywords), prompt) is not None:
        return True
    template = prompt.replace(keywords, "").strip()
    return bool(template) and prompt.strip() in prediction


def count_garbled(predictions: Sequence[str], keywords: Sequence[str], prompts: Sequence[str]) -> int:
    """How many predictions are garbled (``is_garbled``), each against its own keywords and prompt."""
    return sum(is_garbled(p, k, t) for p, k, t in zip(predictions, keywords, prompts, strict=True))


def keyword_coverage(keywords: Sequence[str], predictions: Sequence[str]) -> tuple[float, int]:
    """Share of predictions that mention every object keyword of their input, over inputs that have
    at least one object keyword; also returns how many inputs counted."""
    counted = [
        mentions_all_objects(kw, pred)
        for kw, pred in zip(keywords, predictions, strict=True)
        if object_keywords(kw)
    ]
    return (fmean(counted) if counted else 0.0), len(counted)


def score_predictions(
    keywords: Sequence[str], references: Sequence[str], predictions: Sequence[str], prompts: Sequence[str]
) -> dict[str, float]:
    """All text scores for one prediction set (latency is measured separately)."""
    coverage, counted = keyword_coverage(keywords, predictions)
    garbled = count_garbled(predictions, keywords, prompts)
    return {
        **bleu_scores(references, predictions),
        "meteor": meteor(references, predictions),
        **rouge_f_scores(references, predictions),
        "emoji_share": fmean(has_emoji(p) for p in predictions) if predictions else 0.0,
        "keyword_coverage": coverage,
        "keyword_inputs": float(counted),
        "distinct_share": len(set(predictions)) / len(predictions) if predictions else 0.0,
        "garbled": float(garbled),
        "count": float(len(predictions)),
    }
