"""Comment pairs: loading, the deterministic train/validation/test split, keyword parsing.

A pair is ``{"keywords": "기쁨, 안경, 나무", "comment": "..."}``. The first keywords may be emotions
(분노/슬픔/공포/기쁨), the rest are Korean object names (Open Images V7 classes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "comments" / "pairs.jsonl"
DEFAULT_OBJECT_NAMES = REPO_ROOT.parent / "shared" / "data" / "oiv7_labels_ko.json"

EMOTION_KEYWORDS = frozenset({"분노", "슬픔", "공포", "기쁨"})
KEYWORD_SEPARATOR = ", "
# Clean Korean object names only: the machine-translated list also holds "박쥐 (동물)" and junk.
_CLEAN_NAME = re.compile(r"^[가-힣]+( [가-힣]+)?$")


@dataclass(frozen=True, slots=True)
class Pair:
    keywords: str
    comment: str

    @property
    def keyword_list(self) -> list[str]:
        return split_keywords(self.keywords)

    @property
    def object_keywords(self) -> list[str]:
        return object_keywords(self.keywords)


@dataclass(frozen=True, slots=True)
class Split:
    train: list[Pair]
    validation: list[Pair]
    test: list[Pair]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def split_keywords(keywords: str) -> list[str]:
    return [k.strip() for k in keywords.split(",") if k.strip()]


def object_keywords(keywords: str) -> list[str]:
    return [k for k in split_keywords(keywords) if k not in EMOTION_KEYWORDS]


def iter_pair_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Each non-blank line of a jsonl as a dict whose ``keywords`` and ``comment`` are strings (other
    keys kept); a bad line raises with its line number so a user can fix the file."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                keywords, comment = str(row["keywords"]), str(row["comment"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with keywords and comment"
                ) from exc
            yield {**row, "keywords": keywords, "comment": comment}


def load_pairs(path: Path) -> list[Pair]:
    """Read a jsonl of ``{"keywords", "comment"}`` (see ``iter_pair_rows``)."""
    pairs = [
        Pair(keywords=row["keywords"].strip(), comment=row["comment"].strip()) for row in iter_pair_rows(path)
    ]
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def write_pairs(path: Path, pairs: Iterable[Pair]) -> None:
    write_jsonl(path, (asdict(pair) for pair in pairs))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, Hangul and emoji as they are; creates the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every non-blank line of a jsonl as a dict (``write_jsonl``'s reader; pairs: ``iter_pair_rows``)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_pairs(pairs: Sequence[Pair], *, seed: int, validation: int | float, test: int | float) -> Split:
    """Shuffle with ``seed`` and cut off test, then validation; sizes are counts or fractions."""

    def count(size: int | float) -> int:
        return round(size * len(pairs)) if isinstance(size, float) and size < 1 else int(size)

    n_test, n_val = count(test), count(validation)
    if n_test + n_val >= len(pairs):
        raise ValueError(f"split sizes {n_val}+{n_test} leave no training data out of {len(pairs)} pairs")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    shuffled = [pairs[i] for i in order]
    return Split(
        test=shuffled[:n_test],
        validation=shuffled[n_test : n_test + n_val],
        train=shuffled[n_test + n_val :],
    )


def load_object_names(path: Path) -> list[str]:
    """Clean Korean object names from the OIV7 label map (``{"id": "name"}``), de-duplicated, sorted."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    values = raw.values() if isinstance(raw, dict) else raw
    return sorted({str(v).strip() for v in values if _CLEAN_NAME.match(str(v).strip())})


def holdout_object_names(names: Sequence[str], pairs: Sequence[Pair], *, count: int, seed: int) -> list[str]:
    """A fixed set of object names for the "unseen keyword" evaluation.

    Only names that never occur in any pair (keyword or comment text) qualify, so neither the
    training data nor the augmentation can ever teach them.
    """
    text = "\n".join(f"{p.keywords}\n{p.comment}" for p in pairs)
    candidates = sorted(n for n in names if n not in text and n.replace(" ", "") not in text)
    rng = random.Random(seed)
    return sorted(rng.sample(candidates, min(count, len(candidates))))
