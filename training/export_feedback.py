"""Export what users thought of the comments as training pairs for ``training.train_generator``.

    python -m training.export_feedback --out liked.jsonl [--negatives replaced.jsonl]

``--out``: keyword → comment pairs whose version got more 👍 than 👎. ``--negatives`` (default: next
to ``--out`` as ``<name>.replaced.jsonl``): versions users replaced with 🔄, kept apart so they are
never trained on by accident. Each line is ``{"keywords", "comment", "generator", "net_votes"}``;
``train_generator --data`` reads ``keywords`` and ``comment`` and ignores the rest.

The store is the bot's (``DATABASE_URL`` / ``STATE_DB`` from the settings, or ``--database-url``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bot.store import Store, store_url
from inference.settings import SettingsError, load_settings
from training.data import write_jsonl

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="jsonl of liked keyword → comment pairs")
    parser.add_argument("--negatives", type=Path, help="jsonl of replaced (🔄) comments")
    parser.add_argument("--database-url", help="SQLAlchemy async URL (default: the bot's settings)")
    return parser.parse_args(argv)


async def export(url: str, out: Path, negatives: Path) -> tuple[int, int]:
    """Write both files; returns (liked, replaced) counts."""
    store = Store(url)
    await store.open()
    try:
        liked = await store.liked_pairs()
        replaced = await store.replaced_pairs()
    finally:
        await store.close()
    write_jsonl(out, (asdict(pair) for pair in liked))
    write_jsonl(negatives, (asdict(pair) for pair in replaced))
    return len(liked), len(replaced)


def default_negatives(out: Path) -> Path:
    return out.with_name(f"{out.stem}.replaced{out.suffix or '.jsonl'}")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        url = args.database_url or store_url(load_settings())
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    negatives = args.negatives or default_negatives(args.out)
    liked, replaced = asyncio.run(export(url, args.out, negatives))
    logger.info(
        "wrote %d liked pair(s) to %s and %d replaced comment(s) to %s", liked, args.out, replaced, negatives
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
