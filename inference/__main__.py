"""Command line: Korean keywords and a comment for photos, with the models loaded in this process.

    python -m inference PHOTO [PHOTO ...] [--generator NAME] [--json] [--deterministic]

Results go to stdout (``--json``: one JSON object per photo and line, in input order), logs to
stderr. A photo that cannot be read gets its Korean error and the others still run; the exit
code is 1 when any photo failed, 2 for unusable settings, models or generator names. Path problems
(missing, a folder, unreadable, too large) are reported on stderr before the models load, and when no
photo is usable the models are not loaded at all. ``timings_ms`` is each photo's own: its decode plus
its share of every batched stage (``total``), and ``batch`` for the whole batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from inference.errors import CommentBotError, ImageTooLargeError, UnknownGeneratorError
from inference.models.registry import discover_generators, resolve_generator
from inference.results import CommentResult
from inference.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("inference.cli")

EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE = 0, 1, 2


class FileReadError(CommentBotError):
    code = "file_unreadable"
    user_message = "파일을 읽을 수 없어요 😢 경로와 권한을 확인해 주세요."


class FileMissingError(FileReadError):
    code = "file_not_found"
    user_message = "파일을 찾을 수 없어요 🤔 경로를 확인해 주세요."


class PathIsFolderError(FileReadError):
    code = "is_a_directory"
    user_message = "사진 파일이 아니라 폴더예요 📁 폴더 안의 사진 파일 경로를 하나씩 적어 주세요."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference",
        description="사진에서 감정·사물 키워드를 찾고 따뜻한 한국어 댓글을 만들어요.",
    )
    parser.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="사진 파일 (JPG, PNG, HEIC …)")
    parser.add_argument("--generator", "-g", help="댓글 모델 이름 (기본: DEFAULT_GENERATOR 설정)")
    parser.add_argument("--json", action="store_true", help="사진마다 JSON 한 줄로 출력")
    parser.add_argument("--deterministic", action="store_true", help="샘플링 없이 항상 같은 댓글")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"설정 오류: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(args, settings)
    except KeyboardInterrupt:
        print("중단했어요.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user error: short message, details with LOG_LEVEL=DEBUG
        logger.debug("unexpected failure", exc_info=True)
        print(f"예상하지 못한 오류로 멈췄어요 😢 ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_UNUSABLE


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:  # check the name before spending seconds on loading models
        if args.generator is not None:
            resolve_generator(args.generator, discover_generators(settings.generators_dir))
    except UnknownGeneratorError as exc:
        print(exc.user_message, file=sys.stderr)
        return EXIT_UNUSABLE
    path_errors = _check_paths(args.photos, settings.max_image_bytes)  # before the models load
    if len(path_errors) == len(args.photos):
        for path in args.photos:
            _print_outcome(path, path_errors[path], as_json=args.json)
        return EXIT_SOME_FAILED

    from inference.models.pipeline import Pipeline, PipelineRequest  # heavy: torch, ultralytics, transformers

    try:
        pipeline = Pipeline.from_settings(settings)
        generator = pipeline.generators.resolve(args.generator)
    except UnknownGeneratorError as exc:  # the folder exists but its model failed to load
        print(exc.user_message, file=sys.stderr)
        return EXIT_UNUSABLE
    except (OSError, ValueError, RuntimeError) as exc:
        logger.error("cannot load models from %s: %s", settings.weights_dir, exc)
        print(f"모델을 불러올 수 없어요 😢 ({settings.weights_dir}): {exc}", file=sys.stderr)
        return EXIT_UNUSABLE

    failed = 0
    for chunk in _chunks(args.photos, settings.max_batch_size):
        loaded = [path_errors.get(path) or _read_photo(path, settings.max_image_bytes) for path in chunk]
        requests = [
            PipelineRequest(data, generator, sample=not args.deterministic)
            for data in loaded
            if isinstance(data, bytes)
        ]
        results = iter(pipeline.run_batch(requests))
        for path, data in zip(chunk, loaded, strict=True):
            outcome = next(results) if isinstance(data, bytes) else data
            if isinstance(outcome, CommentBotError):
                failed += 1
            _print_outcome(path, outcome, as_json=args.json)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _check_paths(paths: Sequence[Path], max_bytes: int) -> dict[Path, CommentBotError]:
    """Problems with the paths themselves (missing, a folder, unreadable, too large), reported on
    stderr at once, before any model loads."""
    problems: dict[Path, CommentBotError] = {}
    for path in paths:
        problem = _path_problem(path, max_bytes)
        if problem is not None:
            problems[path] = problem
            print(f"{path}: {problem.user_message}", file=sys.stderr, flush=True)
    return problems


def _path_problem(path: Path, max_bytes: int) -> CommentBotError | None:
    try:
        if path.is_dir():
            return PathIsFolderError(f"{path}: is a directory")
        size = path.stat().st_size
    except FileNotFoundError:
        return FileMissingError(f"{path}: no such file")
    except OSError as exc:
        return FileReadError(f"{path}: {exc.strerror or exc}")
    if size > max_bytes:
        return ImageTooLargeError(f"{path}: {size} bytes > limit {max_bytes}")
    if not os.access(path, os.R_OK):
        return FileReadError(f"{path}: not readable")
    return None


def _read_photo(path: Path, max_bytes: int) -> bytes | CommentBotError:
    """The file's bytes, refusing oversized files before reading them into memory."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return ImageTooLargeError(f"{path}: {size} bytes > limit {max_bytes}")
        return path.read_bytes()
    except FileNotFoundError:
        return FileMissingError(f"{path}: no such file")
    except IsADirectoryError:
        return PathIsFolderError(f"{path}: is a directory")
    except OSError as exc:
        return FileReadError(f"{path}: {exc.strerror or exc}")


def _print_outcome(path: Path, outcome: CommentResult | CommentBotError, *, as_json: bool) -> None:
    if isinstance(outcome, CommentBotError):
        logger.warning("%s: %s (%s)", path, outcome.code, outcome)
        if as_json:
            _print_json({"file": str(path), "error": outcome.user_message, "code": outcome.code})
        else:
            print(f"{path}\n  오류: {outcome.user_message}")
        return
    if as_json:
        _print_json({"file": str(path), **outcome.to_json_dict()})
        return
    print(f"{path}\n  키워드: {', '.join(outcome.keywords)}\n  댓글: {outcome.comment}")


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False), flush=True)


def _chunks(paths: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


if __name__ == "__main__":
    sys.exit(main())
