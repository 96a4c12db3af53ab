"""``python -m inference.benchmark``: runs end to end through client and worker and reports sane numbers."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from inference.serving import benchmark

FIXED_COST = "tests.test_queue_fakes:FixedCostPipeline.from_settings"
REQUIRED_KEYS = {
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_batched",
    "throughput_unbatched",
    "batching_speedup",
    "worker_peak_rss_mb",
    "client_rss_mb",
    "device",
    "generator",
    "photos",
}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert benchmark.main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.timeout(120)
def test_benchmark_measures_batching_speedup(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = run_json(
        capsys,
        "--pipeline-factory", FIXED_COST,
        "--weights-dir", str(tmp_path),
        "--device", "cpu",
        "--latency-photos", "6",
        "--throughput-photos", "48",
        "--concurrency", "8",
    )  # fmt: skip
    assert report.keys() >= REQUIRED_KEYS
    p50, p95 = report["latency_p50_ms"], report["latency_p95_ms"]
    assert isinstance(p50, float) and isinstance(p95, float)
    assert 50.0 <= p50 <= p95 < 2000.0  # each photo pays the 50 ms pass plus the queue
    # a fixed cost per pass: 8 photos per pass instead of 1 must be several times faster
    assert report["batching_speedup"] >= 2.0, report
    assert report["throughput_unbatched"] <= 20.5  # at most one photo per 50 ms pass
    assert max(int(size) for size in report["batch_size_counts"]) == 8
    assert 5.0 < report["worker_peak_rss_mb"] < 2000.0
    assert 5.0 < report["client_rss_mb"] < 2000.0
    assert report["device"] == "fake" and report["generator"] == "t5"
    assert report["errors"] == {}
    photos = report["photos"]
    assert isinstance(photos, list) and len(photos) == 8
    assert any("bus.jpg" in p for p in photos) and any("zidane.jpg" in p for p in photos)


def test_benchmark_reads_photos_from_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(benchmark.synthetic_jpeg(64, 48, random.Random(1)))
    (photos / "notes.txt").write_text("not a photo")
    report = run_json(
        capsys,
        "--pipeline-factory", FIXED_COST,
        "--images", str(photos),
        "--weights-dir", str(tmp_path),
        "--latency-photos", "2",
        "--throughput-photos", "4",
        "--concurrency", "2",
    )  # fmt: skip
    assert [p.split(" ")[0] for p in report["photos"]] == ["a.jpg"]


def test_benchmark_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["--concurrency", "0"])


def test_synthetic_photos_are_real_jpegs_of_the_asked_size() -> None:
    import random

    data = benchmark.synthetic_jpeg(320, 200, random.Random(0))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (320, 200)


@pytest.mark.timeout(300)
def test_benchmark_on_tiny_weights(capsys: pytest.CaptureFixture[str], tiny_weights_dir: Path) -> None:
    report = run_json(
        capsys,
        "--weights-dir", str(tiny_weights_dir),
        "--device", "cpu",
        "--latency-photos", "3",
        "--throughput-photos", "8",
        "--concurrency", "4",
        "--generator", "gpt2",
    )  # fmt: skip
    assert report.keys() >= REQUIRED_KEYS
    assert report["errors"] == {}
    assert report["device"] == "cpu" and report["generator"] == "gpt2"
    assert 0 < report["latency_p50_ms"] <= report["latency_p95_ms"] < 60_000
    assert report["throughput_batched"] > 0 and report["throughput_unbatched"] > 0
    assert report["batching_speedup"] == pytest.approx(
        report["throughput_batched"] / report["throughput_unbatched"], rel=0.02
    )
    assert 100 < report["worker_peak_rss_mb"] < 4000  # torch + models live in the worker
    # the queue adds the batching window (10 ms) plus IPC, not whole seconds
    assert 0 <= report["queue_overhead_p50_ms"] < 1000
    assert {"decode", "emotion", "generate", "total"} <= report["stage_median_ms"].keys()


@pytest.mark.timeout(240)
def test_queue_benchmark_compares_local_and_redis_and_scales_with_workers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redis_url: str
) -> None:
    """``--queue``: the local worker, then 1 and 2 worker processes on Redis, in one run."""
    report = run_json(
        capsys,
        "--queue", redis_url,
        "--workers", "1,2",
        "--pipeline-factory", FIXED_COST,
        "--weights-dir", str(tmp_path),
        "--device", "cpu",
        "--latency-photos", "6",
        "--throughput-photos", "64",
        "--concurrency", "16",
        "--max-batch-size", "4",
        "--claim-idle-s", "1",
    )  # fmt: skip
    assert report["local"]["photos"] == report["redis"]["photos"] == 6
    assert (
        50.0 <= report["local"]["latency_p50_ms"] < 2000.0
        and 50.0 <= report["redis"]["latency_p50_ms"] < 2000.0
    )
    assert report["errors_1_workers"] == {} and report["errors_2_workers"] == {}
    # a fixed 50 ms per batch of ≤ 4 and no CPU use: two workers do nearly twice the work
    assert report["throughput_1_workers"] <= 4 / 0.05 + 1
    assert report["scaling_2_vs_1"] >= 1.6, report
    assert report["queue"] == redis_url and report["torch_threads_per_worker"] == 1
    takeover = report["takeover"]  # one of the two workers killed -9 while it held jobs
    assert takeover["held_by_killed_worker"] >= 1 and takeover["photos"] == 16
    assert (takeover["lost"], takeover["duplicates"]) == (0, 0), takeover
    assert takeover["answered_after_kill_s"] <= 1 + 5
