"""``python -m inference``: JSON lines in input order, Korean errors per photo, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference.__main__ import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, main
from inference.settings import REPO_ROOT
from tests.fixtures import images as corpus

JSON_KEYS = {"file", "comment", "keywords", "faces", "objects", "generator", "timings_ms"}


def cli_env(weights_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIGHTS_", "DEFAULT_GENERATOR"))}
    env.update({"WEIGHTS_DIR": str(weights_dir), "DEVICE": "cpu", "TORCH_THREADS": "2", "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_json_lines_in_input_order_with_errors_per_photo(
    tiny_weights_dir: Path, bus_jpg: Path, tmp_path: Path
) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("사진이 아니에요", encoding="utf-8")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(corpus.hostile_images()["truncated_jpeg"][0])
    missing = tmp_path / "missing.jpg"
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(corpus.exif_oriented_jpeg(6, size=(160, 96)))
    photos = [bus_jpg, text_file, missing, truncated, rotated]

    completed = run_cli([*map(str, photos), "--json", "--deterministic"], cli_env(tiny_weights_dir))

    assert completed.returncode == EXIT_SOME_FAILED, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(p) for p in photos]

    ok = lines[0]
    assert set(ok) >= JSON_KEYS
    assert ok["generator"] == "t5"
    assert any("\uac00" <= ch <= "\ud7a3" for ch in ok["comment"])
    assert ok["faces"] and set(ok["faces"][0]) == {"label", "keyword", "confidence", "box"}
    assert all(0 <= f["box"][0] <= f["box"][2] <= 810 and f["box"][3] <= 1080 for f in ok["faces"])
    assert {"decode", "emotion", "objects", "generate", "total"} <= set(ok["timings_ms"])

    assert lines[1]["code"] == "not_an_image"
    assert lines[2]["code"] == "file_not_found"
    assert lines[3]["code"] == "truncated_image"
    for line in lines[1:4]:
        assert set(line) == {"file", "error", "code"}
        assert any("\uac00" <= ch <= "\ud7a3" for ch in line["error"])
    assert "\\u" not in completed.stdout  # ensure_ascii=False: Korean is readable
    assert lines[4]["image_size"] == [160, 96]  # EXIF orientation applied
    assert "INFO" in completed.stderr  # logs go to stderr, results to stdout


def test_unknown_generator_exits_2_with_the_names(tiny_weights_dir: Path, bus_jpg: Path) -> None:
    completed = run_cli([str(bus_jpg), "--generator", "kogpt"], cli_env(tiny_weights_dir))
    assert completed.returncode == EXIT_UNUSABLE
    assert completed.stdout == ""
    assert "'kogpt' 모델은 없어요" in completed.stderr
    assert "gpt2, t5" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.fixture
def cli_environment(tiny_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key, value in cli_env(tiny_weights_dir, LOG_LEVEL="WARNING").items():
        if key in {"WEIGHTS_DIR", "DEVICE", "TORCH_THREADS", "LOG_LEVEL"}:
            monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("cli_environment")
def test_text_output_for_good_photos(
    zidane_jpg: Path, bus_jpg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(zidane_jpg), str(bus_jpg), "-g", "gpt2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("키워드: ") == 2 and out.count("댓글: ") == 2
    assert out.index(str(zidane_jpg)) < out.index(str(bus_jpg))


@pytest.mark.usefixtures("cli_environment")
def test_oversized_file_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAX_IMAGE_BYTES", "2048")
    big = tmp_path / "big.png"
    big.write_bytes(corpus.encode(corpus.noisy_photo((128, 128)), "PNG"))
    assert big.stat().st_size > 2048
    assert main([str(big), "--json"]) == EXIT_SOME_FAILED
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["code"] == "image_too_large"


@pytest.mark.usefixtures("cli_environment")
def test_bad_settings_exit_2_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bus_jpg: Path
) -> None:
    monkeypatch.setenv("DEVICE", "gpu-please")
    assert main([str(bus_jpg)]) == EXIT_UNUSABLE
    assert "DEVICE" in capsys.readouterr().err


def test_missing_argument_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


@pytest.mark.usefixtures("cli_environment")
def test_path_problems_are_reported_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from inference.models.pipeline import Pipeline

    def no_models(settings: object) -> None:
        raise AssertionError("models must not load when no photo is usable")

    monkeypatch.setattr(Pipeline, "from_settings", no_models)
    folder = tmp_path / "album"
    folder.mkdir()
    assert main([str(folder), str(tmp_path / "missing.jpg"), "--json"]) == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert [line["code"] for line in lines] == ["is_a_directory", "file_not_found"]
    assert "폴더" in lines[0]["error"] and "폴더" in captured.err  # said on stderr at once, too


@pytest.mark.usefixtures("cli_environment")
def test_timings_are_each_photos_own(
    zidane_jpg: Path, bus_jpg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(zidane_jpg), str(bus_jpg), "--json", "--deterministic"]) == EXIT_OK
    first, second = (json.loads(x)["timings_ms"] for x in capsys.readouterr().out.splitlines())
    assert first["batch"] == second["batch"]  # the one batch both photos ran in
    for timings in (first, second):
        stages = sum(v for k, v in timings.items() if k not in {"total", "batch"})
        assert timings["total"] == pytest.approx(stages, abs=0.05)
        assert timings["total"] < timings["batch"]  # a share, not the whole batch
