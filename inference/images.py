"""Image intake: untrusted bytes → one RGB ``PIL.Image`` that is safe and small enough to run models on.

Order matters for safety and speed: size limits are checked before decoding (``Image.open`` only
reads the header), JPEGs are decoded at a reduced scale with ``Image.draft`` when they are larger
than needed, and the image is downscaled once here so the models never see a 40 MP array. The
scale factors are kept so that boxes can be reported in the original (EXIF-rotated) pixels.

Torch-free on purpose: the bot process may use it to reject bad files before queueing them.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from inference.errors import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TooManyPixelsError,
    TruncatedImageError,
)
from inference.results import Box

logger = logging.getLogger(__name__)

pillow_heif.register_heif_opener()  # HEIC/HEIF photos from iPhones open like any other format
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off upload must fail, not decode half a picture

_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # orientations that rotate by 90°, so width and height trade places
_WHITE = (255, 255, 255)
# Errors Pillow's decoders raise for corrupt data (zlib errors, bad chunk lengths, short reads).
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, TypeError, KeyError)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An RGB image ready for the models and the geometry that maps its pixels back to the upload."""

    image: Image.Image  # RGB, at most ``max_side`` on its longer side
    original_size: tuple[int, int]  # width, height of the upload after EXIF rotation
    format: str | None  # "JPEG", "PNG", "HEIF", ...

    @property
    def scale(self) -> tuple[float, float]:
        """Original pixels per working pixel along x and y (1.0 when nothing was downscaled)."""
        width, height = self.image.size
        return self.original_size[0] / width, self.original_size[1] / height

    def to_original(self, box: Box) -> Box:
        """Map a box in working-image pixels to original pixels, clipped to the image."""
        sx, sy = self.scale
        width, height = self.original_size
        x1, y1, x2, y2 = box
        return (
            min(max(x1 * sx, 0.0), width),
            min(max(y1 * sy, 0.0), height),
            min(max(x2 * sx, 0.0), width),
            min(max(y2 * sy, 0.0), height),
        )


def decode_image(
    data: bytes,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    max_side: int = 1280,
) -> DecodedImage:
    """Decode ``data`` into a ``DecodedImage`` or raise an ``ImageError`` subclass with a Korean message."""
    check_byte_size(data, max_bytes)
    try:
        return _decode(data, max_pixels, max_side)
    except ImageError:
        raise
    except MemoryError as exc:
        raise TooManyPixelsError(f"out of memory while decoding: {exc}") from None
    except Exception as exc:  # a hostile file must never crash the worker
        logger.warning("unexpected error decoding image: %r", exc)
        raise NotAnImageError(f"undecodable image: {exc!r}") from None


def check_byte_size(data: bytes, max_bytes: int) -> None:
    """Cheap checks that need no decoding; the bot can call them before queueing a job."""
    if not data:
        raise EmptyImageError("empty upload")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{len(data)} bytes > limit {max_bytes}")


def _decode(data: bytes, max_pixels: int, max_side: int) -> DecodedImage:
    image = _open_lazily(data)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise NotAnImageError(f"image claims size {width}x{height}")
    if width * height > max_pixels:
        raise TooManyPixelsError(f"{width}x{height} = {width * height} pixels > limit {max_pixels}")
    orientation = _orientation(image)
    original_size = (height, width) if orientation in _SWAPS_SIDES else (width, height)
    image_format = image.format
    _request_draft(image, max_side)
    _load_fully(image)
    image = _apply_exif_orientation(image)
    image = to_rgb(image)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return DecodedImage(image=image, original_size=original_size, format=image_format)


def _open_lazily(data: bytes) -> Image.Image:
    """``Image.open`` reads only the header; PIL's own bomb guard is turned into our typed error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixelsError(str(exc)) from None
    except UnidentifiedImageError as exc:
        raise NotAnImageError(str(exc)) from None
    except _DECODE_ERRORS as exc:
        raise TruncatedImageError(f"broken image header: {exc!r}") from None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception as exc:  # broken EXIF blocks are common; the picture itself may be fine
        logger.info("ignoring unreadable EXIF: %r", exc)
        return 1


def _request_draft(image: Image.Image, max_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is far bigger than needed.

    ``draft`` only picks scales that keep the result at least as large as requested, so the
    final ``thumbnail`` still sees enough pixels for a clean downscale.
    """
    if image.format not in ("JPEG", "MPO") or max(image.size) <= max_side:  # MPO: camera JPEGs
        return
    ratio = max_side / max(image.size)
    requested = (math.ceil(image.size[0] * ratio), math.ceil(image.size[1] * ratio))
    image.draft(None, requested)


def _load_fully(image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixelsError(str(exc)) from None
    except _DECODE_ERRORS as exc:
        raise TruncatedImageError(f"cannot decode image data: {exc!r}") from None


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:
        logger.info("could not apply EXIF orientation, keeping the stored one: %r", exc)
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparency is composited on white (how chat apps show it)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _composite_on_white(image.convert("RGBA"))
    if mode == "RGBX":
        return image.convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:  # e.g. LAB without a colour profile
        raise NotAnImageError(f"unsupported colour mode {mode}: {exc}") from None


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit (``I;16*``), 32-bit integer (``I``, usually 16-bit data) and float greyscale → 8-bit."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = float(values.max()) if values.size else 0.0
        values = values * 255.0 if peak <= 1.0 else values  # floats in 0..1 or 0..255
    else:
        values = values / 257.0  # 0..65535 → 0..255
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
