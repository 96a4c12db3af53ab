"""Scriptable stand-in pipelines for the queue tests, loaded *inside the worker process*.

The worker resolves ``"tests.test_queue_fakes:FakePipeline.from_settings"`` in its spawned child, so
this module must stay importable there and light (no torch, no test fixtures). Each photo's bytes
script what happens to it:

    b"ok:<text>"     comment "<text>"
    b"sleep:<s>"     the batch takes at least <s> seconds (the slowest photo decides: one pass per batch)
    b"fail"          run_batch raises (the worker must isolate the job)
    b"bad"           NotAnImageError in that slot
    b"crash"         the worker process dies with os._exit(3)
    b"odd"           an error object that cannot be pickled back to the client
    b"pid"           comment is the worker's pid
    b"who:<s>"       takes <s> seconds, comment is the worker's pid (which worker answered)
    b"gen"           comment is the generator's name (which model the chat's setting chose)
    b"tokens"        comment shows the bot tokens the worker received

and ``FakePipeline`` dies while loading when ``weights_dir/crash-on-load`` exists.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from inference.errors import CommentBotError, NotAnImageError, UnknownGeneratorError
from inference.results import CommentResult
from inference.settings import Settings

GENERATORS = ("gpt2", "t5")
CRASH_ON_LOAD = "crash-on-load"  # while this file exists in weights_dir, new workers die loading


@dataclass(frozen=True, slots=True)
class FakeRequest:
    image: bytes
    generator: str | None = None
    sample: bool = True
    keywords: tuple[str, ...] | None = None
    deadline: float | None = None


class FakePipeline:
    request_type = FakeRequest
    device = "fake"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_generator = settings.default_generator

    @classmethod
    def from_settings(cls, settings: Settings) -> FakePipeline:
        if (settings.weights_dir / CRASH_ON_LOAD).exists():
            os._exit(4)  # like a segfault or OOM kill while loading the models
        return cls(settings)

    def generator_names(self) -> list[str]:
        return list(GENERATORS)

    def warmup(self) -> None:
        self.run_batch([FakeRequest(b"ok:warmup")])

    def run_batch(self, requests: Sequence[FakeRequest]) -> list[CommentResult | CommentBotError]:
        images = [r.image for r in requests]
        if b"crash" in images:
            os._exit(3)
        if b"fail" in images:
            raise RuntimeError("scripted pipeline failure")
        time.sleep(max((_sleep_s(image) for image in images), default=0.0))
        return [self._answer(r, len(requests)) for r in requests]

    def _answer(self, request: FakeRequest, batch_size: int) -> CommentResult | CommentBotError:
        generator = request.generator or self.default_generator
        if generator not in GENERATORS:
            return UnknownGeneratorError(generator, GENERATORS)
        if request.image == b"bad":
            return NotAnImageError("scripted bad image")
        if request.image == b"odd":
            return UnpicklableError()
        text = request.image.decode(errors="replace")
        if request.image == b"pid" or request.image.startswith(b"who:"):
            text = str(os.getpid())
        elif request.image == b"gen":
            text = generator
        elif request.image == b"tokens":
            text = f"{self.settings.telegram_bot_token}|{self.settings.discord_bot_token}"
        return CommentResult(
            comment=text.removeprefix("ok:"),
            keywords=[],
            faces=[],
            objects=[],
            generator=generator,
            timings_ms={"batch_size": float(batch_size)},
        )


class UnpicklableError(CommentBotError):
    def __init__(self) -> None:
        super().__init__("carries a lambda")
        self.callback = lambda: None

    def __reduce__(self) -> tuple[object, ...]:
        return (UnpicklableError, (), {"callback": self.callback})


class BrokenPipeline(FakePipeline):
    """Fails while loading, like missing or corrupt weights."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FakePipeline:
        raise FileNotFoundError("emotion/model.pt not found (scripted)")


class SlowLoadingPipeline(FakePipeline):
    """Takes far longer to load than any start timeout in the tests."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FakePipeline:
        time.sleep(120)
        return cls(settings)


def _sleep_s(image: bytes) -> float:
    for prefix in (b"sleep:", b"who:"):
        if image.startswith(prefix):
            return float(image.removeprefix(prefix))
    return 0.0


class FixedCostPipeline(FakePipeline):
    """Every batch costs the same 50 ms whatever its size, like a model whose work is per pass:
    batching must then multiply throughput."""

    def run_batch(self, requests: Sequence[FakeRequest]) -> list[CommentResult | CommentBotError]:
        time.sleep(0.05)
        return [self._answer(r, len(requests)) for r in requests]
