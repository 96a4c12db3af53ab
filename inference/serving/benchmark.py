"""Benchmark the comment service the way the bot runs it: client → worker process → pipeline.

    python -m inference.benchmark --json
    python -m inference.benchmark --weights-dir weights --images ~/photos --generator gpt2
    python -m inference.benchmark --queue redis://localhost:6379/0 --workers 1,2   # shared queue

One run measures, on this machine:

* per-photo latency p50/p95 at concurrency 1 (what one user waits for),
* throughput in photos/s with ``--concurrency`` submitters (default 16), once with dynamic batching
  (``--max-batch-size``, default 8) and once with ``max_batch_size=1``, and their ratio,
* the worker's peak RSS (kernel high-water mark, or sampled) and the client process's RSS.

Photos: ultralytics' ``bus.jpg`` and ``zidane.jpg`` plus synthetic JPEGs at several sizes, or every
image in ``--images``. Generation is sampled, as in the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import psutil
from PIL import Image, ImageDraw

from inference.errors import CommentBotError
from inference.serving.client import InferenceClient
from inference.serving.jobs import DEFAULT_PIPELINE_FACTORY
from inference.serving.local_transport import LocalProcessTransport
from inference.serving.phases import PhaseResult, Photo, run_phase
from inference.serving.queue_args import add_queue_arguments
from inference.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

SYNTHETIC_SIZES = ((640, 480), (480, 640), (1280, 720), (800, 800), (1920, 1080), (320, 240))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif"}
RSS_SAMPLE_S = 0.05
BENCHMARK_TIMEOUT_S = 600.0


# --- photos ----------------------------------------------------------------------------------------
def default_photos(seed: int = 0) -> list[Photo]:
    photos = [Photo(path.name, path.read_bytes()) for path in _ultralytics_assets()]
    rng = random.Random(seed)
    photos += [Photo(f"synthetic-{w}x{h}.jpg", synthetic_jpeg(w, h, rng)) for w, h in SYNTHETIC_SIZES]
    return photos


def photos_from_dir(folder: Path) -> list[Photo]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [Photo(p.name, p.read_bytes()) for p in files]


def synthetic_jpeg(width: int, height: int, rng: random.Random) -> bytes:
    """A JPEG with a gradient and random shapes: cheap, varied, and decodes like a real photo."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        size = rng.randrange(max(8, min(width, height) // 10), max(16, min(width, height) // 3))
        color = tuple(rng.randrange(256) for _ in range(3))
        box = (x, y, x + size, y + size)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=color)
        else:
            draw.rectangle(box, fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _ultralytics_assets() -> list[Path]:
    spec = find_spec("ultralytics")  # locate the package's sample photos without importing it
    if spec is None or spec.origin is None:
        return []
    folder = Path(spec.origin).parent / "assets"
    return [p for p in (folder / "bus.jpg", folder / "zidane.jpg") if p.is_file()]


# --- measuring -------------------------------------------------------------------------------------
class PeakRss:
    """Highest RSS of one process: sampled while running, and the kernel's high-water mark (Linux)."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def watch(self, pid: int) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample(pid))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self, pid: int) -> None:
        try:
            process = psutil.Process(pid)
            while True:
                self.peak_bytes = max(self.peak_bytes, process.memory_info().rss, _high_water_mark(pid))
                await asyncio.sleep(RSS_SAMPLE_S)
        except psutil.Error:
            return  # the process is gone


def _high_water_mark(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class ClientRun:
    latency: PhaseResult | None
    throughput: PhaseResult
    start_s: float
    worker_peak_rss: int
    device: str
    batch_size_counts: dict[int, int]  # of the throughput phase


async def measure(
    settings: Settings,
    factory: str,
    photos: Sequence[Photo],
    *,
    latency_photos: int,
    throughput_photos: int,
    concurrency: int,
    generator: str | None,
) -> ClientRun:
    transport = LocalProcessTransport(settings, factory)
    client = InferenceClient(settings, transport)
    rss = PeakRss()
    started = time.perf_counter()
    await client.start()
    start_s = time.perf_counter() - started
    assert transport.worker_pid is not None
    rss.watch(transport.worker_pid)
    try:
        latency = None
        if latency_photos > 0:
            latency = await run_phase(client, photos, latency_photos, 1, generator)
        batches_before = Counter(client.stats().batch_size_counts)
        throughput = await run_phase(client, photos, throughput_photos, concurrency, generator)
        batches = Counter(client.stats().batch_size_counts) - batches_before
        rss.peak_bytes = max(rss.peak_bytes, _high_water_mark(transport.worker_pid))
    finally:
        await rss.stop()
        await client.close()
    worker = client.worker
    return ClientRun(
        latency=latency,
        throughput=throughput,
        start_s=start_s,
        worker_peak_rss=rss.peak_bytes,
        device=worker.device if worker else settings.device,
        batch_size_counts=dict(sorted(batches.items())),
    )


def _percentile(values: Sequence[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def build_report(
    batched: ClientRun,
    unbatched: ClientRun,
    photos: Sequence[Photo],
    generator: str,
    settings: Settings,
    concurrency: int,
) -> dict[str, Any]:
    latency = batched.latency
    assert latency is not None
    stage_medians = {
        stage: round(statistics.median(ms), 1) for stage, ms in sorted(latency.timings_ms.items())
    }
    speedup = (
        batched.throughput.throughput / unbatched.throughput.throughput
        if unbatched.throughput.throughput
        else 0
    )
    mb = 1024 * 1024
    return {
        "latency_p50_ms": _round(_percentile(latency.latencies_ms, 50)),
        "latency_p95_ms": _round(_percentile(latency.latencies_ms, 95)),
        "latency_photos": latency.photos,
        "queue_overhead_p50_ms": _round(_percentile(latency.overheads_ms, 50)),
        "throughput_batched": round(batched.throughput.throughput, 3),
        "throughput_unbatched": round(unbatched.throughput.throughput, 3),
        "batching_speedup": round(speedup, 2),
        "throughput_photos": batched.throughput.photos,
        "concurrency": concurrency,
        "max_batch_size": settings.max_batch_size,
        "max_wait_ms": settings.max_wait_ms,
        "batch_size_counts": batched.batch_size_counts,
        "worker_peak_rss_mb": round(max(batched.worker_peak_rss, unbatched.worker_peak_rss) / mb, 1),
        "client_rss_mb": round(psutil.Process().memory_info().rss / mb, 1),
        "worker_start_s": round(batched.start_s, 2),
        "stage_median_ms": stage_medians,
        "errors": dict(latency.errors + batched.throughput.errors + unbatched.throughput.errors),
        "fallback_rate": round(latency.fallbacks / max(1, len(latency.latencies_ms)), 3),
        "device": batched.device,
        "torch_threads": settings.resolved_threads(),
        "cpu_count": psutil.cpu_count(),
        "load_average_1m": round(psutil.getloadavg()[0], 2),  # at the end, the benchmark's own included
        "generator": generator,
        "weights_dir": str(settings.weights_dir),
        "photos": [f"{p.name} ({len(p.data) // 1024} KiB)" for p in photos],
        "sampled": True,
    }


# --- command line ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--weights-dir", type=Path, help="weights folder (default: settings / ./weights)")
    parser.add_argument("--images", type=Path, help="folder of photos (default: sample + synthetic photos)")
    parser.add_argument("--generator", help="generator name (default: settings.default_generator)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: settings)")
    parser.add_argument("--latency-photos", type=int, default=40, help="photos sent one at a time")
    parser.add_argument("--throughput-photos", type=int, default=64, help="photos per throughput run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent submitters")
    parser.add_argument("--max-batch-size", type=int, default=8, help="batch size of the batched run")
    parser.add_argument("--max-wait-ms", type=float, help="batching window (default: settings)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="also the worker's",
    )
    parser.add_argument("--pipeline-factory", default=DEFAULT_PIPELINE_FACTORY, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_queue_arguments(parser)
    args = parser.parse_args(argv)
    for name in ("latency_photos", "throughput_photos", "concurrency", "max_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"max_batch_size": args.max_batch_size, "log_level": args.log_level}
    if args.weights_dir is not None:
        overrides["weights_dir"] = args.weights_dir
    if args.device is not None:
        overrides["device"] = args.device
    if args.max_wait_ms is not None:
        overrides["max_wait_ms"] = args.max_wait_ms
    settings = load_settings(**overrides)
    # Room for every submitter (each uses its own chat and has one photo in flight at a time), and a
    # long deadline: this measures speed, so admission by expected wait must not refuse photos when
    # the machine is slow (the bot's own admission is measured by tests/load_scenario.py).
    update = {
        "max_pending": max(settings.max_pending, args.concurrency),
        "job_timeout_s": BENCHMARK_TIMEOUT_S,
    }
    return settings.model_copy(update=update)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = psutil.getloadavg()[0]  # other work on the machine; above ~0.5 the numbers suffer
    settings = make_settings(args)
    photos = photos_from_dir(args.images) if args.images else default_photos()
    if not photos:
        raise SystemExit(f"no photos found in {args.images}")
    if args.queue:  # the shared queue: local vs Redis latency, 1 vs 2 workers
        from inference.serving.queue_benchmark import run_queue_benchmark

        return await run_queue_benchmark(args, settings, photos)
    generator = args.generator or settings.default_generator
    common = {
        "throughput_photos": args.throughput_photos,
        "concurrency": args.concurrency,
        "generator": generator,
    }
    batched = await measure(
        settings, args.pipeline_factory, photos, latency_photos=args.latency_photos, **common
    )
    unbatched_settings = settings.model_copy(update={"max_batch_size": 1})
    unbatched = await measure(unbatched_settings, args.pipeline_factory, photos, latency_photos=0, **common)
    report = build_report(batched, unbatched, photos, generator, settings, args.concurrency)
    report["load_average_before"] = round(load_before, 2)
    return report


def format_text(report: dict[str, Any]) -> str:
    lines = [f"{key:>22}: {value}" for key, value in report.items() if key != "photos"]
    if "photos" in report:
        lines.append(f"{'photos':>22}: " + ", ".join(report["photos"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = asyncio.run(run(args))
    except (SettingsError, CommentBotError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, ensure_ascii=False) if args.json else format_text(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
