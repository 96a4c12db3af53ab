"""Command-line options of the shared-queue benchmark (redis-free, so the local benchmark stays light)."""

from __future__ import annotations

import argparse


def add_queue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", help="Redis URL: benchmark the shared queue (workers started here)")
    parser.add_argument(
        "--claim-idle-s", type=float, default=5.0, help="QUEUE_CLAIM_IDLE_S of the workers (takeover phase)"
    )
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure (with --queue)")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads per worker (with --queue)"
    )


def worker_counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise ValueError("--workers takes positive counts, e.g. 1,2")
    return counts
