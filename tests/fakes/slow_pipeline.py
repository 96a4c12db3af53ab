"""Slow models for admission and load tests, loaded *inside the worker process* by import path
(``PIPELINE_FACTORY`` / ``LocalProcessTransport(settings, factory)``).

* ``SlowFakePipeline`` (``tests.fakes.slow_pipeline:SlowFakePipeline.from_settings``): no models; a batch
  costs ``photo_ms`` per photo, half "detection", half "generation", with the deadline check between
  them as in the real pipeline. Its warm-up runs at ``photo_ms`` but real batches at ``photo_ms ×
  slowdown``: a machine that got slower after the worker measured itself. Both numbers come from
  ``weights_dir/slow-model.json`` (``{"photo_ms": 50, "slowdown": 2}``), so tests choose them per run.
* ``real_twice_as_slow``: the real pipeline, each batch followed by a sleep as long as the batch, so the
  real models run at half speed after an unslowed warm-up (the load scenario's "model slowed 2×").

Torch-free at import: the real pipeline is imported only by ``real_twice_as_slow``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inference.errors import CommentBotError, JobTimeoutError
from inference.results import CommentResult
from inference.settings import Settings

CONFIG_FILE = "slow-model.json"
GENERATORS = ("gpt2", "t5")


@dataclass(frozen=True, slots=True)
class SlowRequest:
    image: bytes
    generator: str | None = None
    sample: bool = True
    keywords: tuple[str, ...] | None = None  # a 🔄 job: no image
    deadline: float | None = None


class SlowFakePipeline:
    request_type = SlowRequest
    device = "fake-slow"

    def __init__(self, photo_ms: float, slowdown: float) -> None:
        self.photo_s = photo_ms / 1000.0
        self.slowdown = slowdown
        self._warm = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SlowFakePipeline:
        config = json.loads((settings.weights_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        return cls(float(config["photo_ms"]), float(config.get("slowdown", 1.0)))

    def generator_names(self) -> list[str]:
        return list(GENERATORS)

    def warmup(self) -> None:
        self.run_batch([SlowRequest(b"warmup"), SlowRequest(b"warmup")])  # one per generator, as the real one
        self._warm = True

    def run_batch(self, requests: Sequence[SlowRequest]) -> list[CommentResult | CommentBotError]:
        cost_s = self.photo_s * (self.slowdown if self._warm else 1.0)
        time.sleep(cost_s / 2 * len(requests))  # "detection"
        now = time.time()
        live = [r.deadline is None or r.deadline > now for r in requests]
        time.sleep(cost_s / 2 * sum(live))  # "generation", only for requests someone still waits for
        return [
            _comment(r) if alive else JobTimeoutError("deadline passed during the batch")
            for r, alive in zip(requests, live, strict=True)
        ]


def _comment(request: SlowRequest) -> CommentResult:
    return CommentResult(
        comment="천천히 봐도 멋진 사진이에요 😊✨",
        keywords=["기쁨"],
        faces=[],
        objects=[],
        generator=request.generator or "t5",
    )


class _SlowedPipeline:
    """Wraps the real pipeline; every batch after warm-up takes ``factor`` times as long."""

    def __init__(self, inner: Any, factor: float) -> None:
        self.inner = inner
        self.factor = factor
        self.device = inner.device

    def generator_names(self) -> list[str]:
        names: list[str] = self.inner.generator_names()
        return names

    def warmup(self) -> None:
        self.inner.warmup()

    def run_batch(self, requests: Sequence[Any]) -> list[CommentResult | CommentBotError]:
        started = time.perf_counter()
        results: list[CommentResult | CommentBotError] = self.inner.run_batch(requests)
        time.sleep((time.perf_counter() - started) * (self.factor - 1.0))
        return results


def real_twice_as_slow(settings: Settings) -> _SlowedPipeline:
    from inference.models.pipeline import Pipeline

    return _SlowedPipeline(Pipeline.from_settings(settings), 2.0)
