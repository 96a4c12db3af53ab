"""Photo in, Korean comment out: preprocess → detect → keywords → generate, for a batch of requests.

``Pipeline`` holds every model, loaded once per process (the worker's, or the CLI's). A batch
shares one detector pass per stage and one ``generate`` call per (generator, sampling) group.
Problems a user can cause (bad image, unknown generator) are returned in that item's slot, so one
bad photo never spoils the others; an unexpected model failure fails only the items it touched.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from inference.errors import CommentBotError, InferenceFailedError, JobTimeoutError
from inference.images import DecodedImage, decode_image
from inference.models.runtime import prepare_offline_ultralytics, resolve_device, set_torch_threads
from inference.results import CommentResult, DetectedObject, Face
from inference.settings import Settings
from inference.text.keywords import build_keywords, has_emotion
from inference.text.templates import honest_comment

if TYPE_CHECKING:
    from inference.models.detect import EmotionDetector, ObjectDetector
    from inference.models.generators import GeneratorSet

logger = logging.getLogger(__name__)

ItemResult = CommentResult | CommentBotError


@dataclass(frozen=True, slots=True)
class PipelineRequest:
    image: bytes
    generator: str | None = None  # None → settings.default_generator
    sample: bool = True  # True: sampled (bot); False: deterministic (eval/benchmark)
    # Set: a new comment for these keywords (🔄), no image and no detection; ``image`` is ignored.
    keywords: tuple[str, ...] | None = None
    deadline: float | None = None  # time.time() after which nobody waits for the answer any more


@dataclass(slots=True)
class _Item:
    """One request while it moves through the stages."""

    index: int
    generator: str
    sample: bool
    decoded: DecodedImage | None  # None for a keywords-only request
    timings_ms: dict[str, float]
    deadline: float | None = None
    faces: list[Face] = field(default_factory=list)
    objects: list[DetectedObject] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        emotion: EmotionDetector,
        objects: ObjectDetector | None,
        generators: GeneratorSet,
        device: str = "cpu",
    ) -> None:
        self.settings = settings
        self.device = device  # resolved ("cuda", not "auto"); the worker reports it
        self.emotion = emotion
        self.objects = objects
        self.generators = generators
        self.rng = random.Random()

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        """Load the detector(s) and every generator on the configured device."""
        prepare_offline_ultralytics()  # before the first ultralytics import (in inference.models.detect)
        from inference.models.detect import EmotionDetector, ObjectDetector
        from inference.models.generators import GeneratorSet

        set_torch_threads(settings.resolved_threads())  # after ultralytics clamped it to 1
        device = resolve_device(settings.device)
        logger.info("loading models on %s with %d torch threads", device, settings.resolved_threads())
        return cls(
            settings,
            EmotionDetector.from_settings(settings, device),
            ObjectDetector.from_settings(settings, device),
            GeneratorSet.from_dir(settings.generators_dir, device, settings.default_generator),
            device,
        )

    def generator_names(self) -> list[str]:
        return self.generators.names()

    def warmup(self) -> None:
        """One dummy pass through every stage and generator, so the first user waits for nothing."""
        started = time.perf_counter()
        dummy = _dummy_jpeg()
        # The grey photo runs decode and detection; it shows no face, so its comment is a template:
        # a keywords-only request per generator warms the generators too.
        requests = [PipelineRequest(dummy, self.generators.default, sample=False)]
        requests += [PipelineRequest(b"", name, False, keywords=("기쁨",)) for name in self.generator_names()]
        for result in self.run_batch(requests):
            if isinstance(result, CommentBotError):
                raise RuntimeError(f"warm-up failed: {result!r}")
        logger.info("warm-up done in %.0f ms", (time.perf_counter() - started) * 1000)

    def run_batch(self, requests: Sequence[PipelineRequest]) -> list[ItemResult]:
        """One result per request, in order; per-item problems come back as the error in that slot.

        ``timings_ms`` is the photo's own: its decode, plus its share of each batched stage (the stage's
        time divided among the photos it ran on); ``total`` sums them, ``batch`` is the whole batch's
        wall time. Requests whose deadline passes between stages are dropped before generation.
        """
        started = time.perf_counter()
        slots: list[ItemResult | None] = [None] * len(requests)
        items = self._preprocess(requests, slots)
        items = self._stage("emotion", _drop_expired(items, slots), slots, self._detect_emotions)
        if self.objects is not None:
            items = self._stage("objects", items, slots, self._detect_objects)
        for item in items:
            item.keywords = build_keywords(item.faces, item.objects, self.settings.max_keywords)
        self._generate(_drop_expired([*items, *self._keyword_items(requests, slots)], slots), slots)
        batch_ms = (time.perf_counter() - started) * 1000
        for index, slot in enumerate(slots):
            if isinstance(slot, CommentResult):
                slot.timings_ms["total"] = sum(slot.timings_ms.values())
                slot.timings_ms["batch"] = batch_ms
            elif slot is None:  # defensive: every path above fills its slots
                slots[index] = InferenceFailedError("no result produced")
        return [slot for slot in slots if slot is not None]

    # --- stages -------------------------------------------------------------------------------
    def _preprocess(self, requests: Sequence[PipelineRequest], slots: list[ItemResult | None]) -> list[_Item]:
        items: list[_Item] = []
        for index, request in enumerate(requests):
            if request.keywords is not None:
                continue  # no image: see _keyword_items
            started = time.perf_counter()
            try:
                generator = self.generators.resolve(request.generator)
                decoded = decode_image(
                    request.image,
                    max_bytes=self.settings.max_image_bytes,
                    max_pixels=self.settings.max_image_pixels,
                    max_side=self.settings.max_image_side,
                )
            except CommentBotError as exc:
                logger.info("request %d rejected: %s (%s)", index, exc.code, exc)
                slots[index] = exc
                continue
            decode_ms = (time.perf_counter() - started) * 1000
            timings = {"decode": decode_ms}
            items.append(_Item(index, generator, request.sample, decoded, timings, request.deadline))
        return items

    def _keyword_items(
        self, requests: Sequence[PipelineRequest], slots: list[ItemResult | None]
    ) -> list[_Item]:
        """Keywords-only requests (🔄): straight to generation with the keywords they bring."""
        items: list[_Item] = []
        for index, request in enumerate(requests):
            if request.keywords is None:
                continue
            try:
                generator = self.generators.resolve(request.generator)
            except CommentBotError as exc:
                slots[index] = exc
                continue
            item = _Item(index, generator, request.sample, None, {}, request.deadline)
            item.keywords = list(request.keywords)
            items.append(item)
        return items

    def _stage(
        self,
        name: str,
        items: list[_Item],
        slots: list[ItemResult | None],
        run: Callable[[list[_Item]], None],
    ) -> list[_Item]:
        """Run one batched stage, timing it; if it blows up, fail its items and keep the process alive."""
        if not items:
            return items
        started = time.perf_counter()
        try:
            run(items)
        except Exception as exc:
            logger.exception("stage %s failed for %d item(s)", name, len(items))
            for item in items:
                slots[item.index] = InferenceFailedError(f"{name} failed: {exc!r}")
            return []
        share_ms = (time.perf_counter() - started) * 1000 / len(items)
        for item in items:
            item.timings_ms[name] = item.timings_ms.get(name, 0.0) + share_ms
        return items

    def _detect_emotions(self, items: list[_Item]) -> None:
        """Faces, and the joint model's objects unless a separate object model replaces them."""
        detected = self.emotion.detect_all(_decoded(items))
        for item, (faces, objects) in zip(items, detected, strict=True):
            item.faces = faces
            if self.objects is None:
                item.objects = objects

    def _detect_objects(self, items: list[_Item]) -> None:
        assert self.objects is not None
        for item, objects in zip(items, self.objects.detect(_decoded(items)), strict=True):
            item.objects = objects

    def _generator_writes(self, item: _Item) -> bool:
        """A face emotion to start from, or objects and a generator trained to comment without one."""
        if has_emotion(item.keywords):
            return True
        return bool(item.keywords) and self.generators.writes_faceless(item.generator)

    def _generate(self, items: list[_Item], slots: list[ItemResult | None]) -> None:
        """One batched ``generate`` per (generator, sampling mode) for photos with a face emotion, and
        for photos with only objects when the generator was trained for them (``faceless``); an
        honest template for the others (a generator that only learned comments starting from an
        emotion invents a mood without one; ``training.evaluate_honesty``)."""
        groups: dict[tuple[str, bool], list[_Item]] = defaultdict(list)
        for item in items:
            item.timings_ms.setdefault("objects", 0.0)
            if self._generator_writes(item):
                groups[(item.generator, item.sample)].append(item)
                continue
            comment = honest_comment(item.keywords, bool(item.faces), self.rng if item.sample else None)
            item.timings_ms["generate"] = 0.0
            slots[item.index] = _result(item, comment, fallback=True)
        for (name, sample), group in groups.items():

            def run(group: list[_Item], name: str = name, sample: bool = sample) -> None:
                comments = self.generators.comments(name, [item.keywords for item in group], sample)
                for item, comment in zip(group, comments, strict=True):
                    slots[item.index] = _result(item, comment.text, comment.fallback)

            self._stage("generate", group, slots, run)


def _drop_expired(items: list[_Item], slots: list[ItemResult | None]) -> list[_Item]:
    """Fail items nobody waits for any more (the bot gave up at their deadline) instead of computing them."""
    now = time.time()
    live = [item for item in items if item.deadline is None or item.deadline > now]
    if len(live) < len(items):
        logger.warning("dropping %d request(s) whose deadline passed in the batch", len(items) - len(live))
        for item in items:
            if item.deadline is not None and item.deadline <= now:
                slots[item.index] = JobTimeoutError("deadline passed during the batch")
    return live


def _result(item: _Item, comment: str, fallback: bool) -> CommentResult:
    return CommentResult(
        comment=comment,
        keywords=item.keywords,
        faces=item.faces,
        objects=item.objects,
        generator=item.generator,
        timings_ms=item.timings_ms,
        image_size=item.decoded.original_size if item.decoded is not None else (0, 0),
        fallback=fallback,
    )


def _decoded(items: list[_Item]) -> list[DecodedImage]:
    """The images of items that came with one (the detection stages only ever see those)."""
    return [item.decoded for item in items if item.decoded is not None]


def _dummy_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()
