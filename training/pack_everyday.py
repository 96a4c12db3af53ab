"""Pack the joint everyday set into one small zip that can travel to a lent GPU machine.

The device tool sends the working tree and at most 64 MiB beside it; ``data/everyday`` links to about
160 MB of JPEGs. The pack holds every train photo shrunk to the training size (ultralytics resizes a
photo's long side to ``imgsz`` before any augmentation, so nothing it would see is lost but JPEG/WebP
detail), stored as WebP, a random subset of the val photos (the trainer's per-epoch check only; the
real evaluation runs here, on every val photo, with ``training.evaluate_detector``) and all labels.
``data.yaml`` inside carries ``path: PLACEHOLDER``: the device command replaces it with the folder
the zip was unpacked to. ``training.device_train`` is the trainer's side. Example::

    python -m training.pack_everyday --everyday data/everyday --out .gpu/everyday.zip
"""

from __future__ import annotations

import argparse
import logging
import random
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

PLACEHOLDER = "PLACEHOLDER"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--everyday", type=Path, required=True, help="training.label_everyday output")
    parser.add_argument("--out", type=Path, required=True, help="the zip to write")
    parser.add_argument("--size", type=int, default=320, help="long side of the packed photos (imgsz)")
    parser.add_argument("--quality", type=int, default=60, help="WebP quality")
    parser.add_argument("--val-photos", type=int, default=150, help="val photos packed (random, seed 0)")
    return parser.parse_args(argv)


def shrink(photo: Path, size: int, quality: int) -> bytes:
    """The photo with its long side at most ``size``, as WebP bytes."""
    with Image.open(photo) as opened:
        image = opened.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=None)  # shrinks only, keeps aspect
    buffer = BytesIO()
    image.save(buffer, "WEBP", quality=quality, method=6)
    return buffer.getvalue()


def packed_photos(everyday: Path, split: str, val_photos: int) -> list[Path]:
    photos = sorted((everyday / "images" / split).iterdir())
    if split == "val" and val_photos < len(photos):
        photos = sorted(random.Random(0).sample(photos, val_photos))
    return photos


def pack(args: argparse.Namespace) -> int:
    """Write the zip; returns the number of photos in it."""
    header = f"# Packed by training.pack_everyday (max side {args.size}, WebP q{args.quality}) from:\n"
    data_yaml = (args.everyday / "data.yaml").read_text(encoding="utf-8")
    lines = [f"path: {PLACEHOLDER}" if line.startswith("path:") else line for line in data_yaml.splitlines()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(args.out, "w", zipfile.ZIP_DEFLATED) as archive, ProcessPoolExecutor(2) as pool:
        archive.writestr("everyday/data.yaml", header + "\n".join(lines) + "\n")
        for split in ("train", "val"):
            photos = packed_photos(args.everyday, split, args.val_photos)
            shrunk = pool.map(
                shrink, photos, [args.size] * len(photos), [args.quality] * len(photos), chunksize=64
            )
            for photo, webp in zip(photos, shrunk, strict=True):
                archive.writestr(f"everyday/images/{split}/{photo.stem}.webp", webp, zipfile.ZIP_STORED)
                label = args.everyday / "labels" / split / f"{photo.stem}.txt"
                if label.exists():  # a photo without a label file is a background photo
                    archive.write(label, f"everyday/labels/{split}/{label.name}")
                count += 1
    logger.info("packed %d photos into %s (%.1f MB)", count, args.out, args.out.stat().st_size / 1e6)
    return count


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pack(parse_args(argv))


if __name__ == "__main__":
    main()
