"""Image intake: every supported format and colour mode decodes to the right picture; hostile files
are rejected with the right typed error, quickly and without decoding huge pixel arrays."""

from __future__ import annotations

import io
import pickle
import time
import tracemalloc

import pytest
from PIL import Image

from inference import images as intake
from inference.errors import (
    ImageError,
    ImageTooLargeError,
    TooManyPixelsError,
    TruncatedImageError,
)
from inference.images import DecodedImage, decode_image
from inference.settings import REPO_ROOT
from tests.fixtures import images as corpus

TOLERANCE = 12  # lossy codecs (JPEG, WebP, HEIC) move flat colours by a few levels


def assert_pattern(image: Image.Image, size: tuple[int, int] = corpus.PATTERN_SIZE) -> None:
    assert image.mode == "RGB"
    assert image.size == size
    for name, point in corpus.quadrant_centres(image.size).items():
        got = image.getpixel(point)
        want = corpus.EXPECTED_QUADRANTS[name]
        assert isinstance(got, tuple)
        assert all(abs(g - w) <= TOLERANCE for g, w in zip(got, want, strict=True)), (name, got, want)


GOOD = corpus.good_images()


@pytest.mark.parametrize("name", sorted(GOOD))
def test_supported_formats_decode_to_the_pattern(name: str) -> None:
    decoded = decode_image(GOOD[name])
    assert_pattern(decoded.image)
    assert decoded.original_size == corpus.PATTERN_SIZE
    assert decoded.scale == (1.0, 1.0)


def test_heic_is_reported_as_heif() -> None:
    assert decode_image(GOOD["heic"]).format == "HEIF"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    data = corpus.exif_oriented_jpeg(orientation)
    stored = Image.open(io.BytesIO(data))
    if orientation >= 5:  # the file itself holds the picture turned by 90°
        assert stored.size == corpus.PATTERN_SIZE[::-1]
    decoded = decode_image(data)
    assert decoded.original_size == corpus.PATTERN_SIZE
    assert_pattern(decoded.image)


GREY = corpus.grey_images(level=100)


@pytest.mark.parametrize("name", sorted(GREY))
def test_greyscale_and_high_bit_depth_become_rgb(name: str) -> None:
    decoded = decode_image(GREY[name])
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((10, 10))  # type: ignore[misc]
    assert red == green == blue
    assert abs(red - 100) <= 2, f"{name}: 16-bit values must be scaled to 8 bits, got {red}"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode: str) -> None:
    decoded = decode_image(corpus.transparent_png(mode))
    opaque = decoded.image.getpixel((8, 16))
    transparent = decoded.image.getpixel((56, 16))
    assert transparent == (255, 255, 255)
    assert opaque != (255, 255, 255)
    if mode != "LA":
        assert opaque == (200, 0, 0)


def test_gif_with_transparent_index_is_composited_on_white() -> None:
    decoded = decode_image(corpus.transparent_gif())
    assert decoded.image.getpixel((8, 16)) == (200, 0, 0)
    assert decoded.image.getpixel((56, 16)) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = Image.open(io.BytesIO(corpus.animated_gif()))
    assert getattr(frames, "n_frames", 1) == 3
    red, green, blue = decode_image(corpus.animated_gif()).image.getpixel((5, 5))  # type: ignore[misc]
    assert red > 200 and green < 30 and blue < 30


HOSTILE = corpus.hostile_images()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_raise_their_typed_error(name: str) -> None:
    data, expected = HOSTILE[name]
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert type(caught.value) is expected, f"{name}: {caught.value!r}"
    assert caught.value.user_message  # a Korean reply for the user
    assert any("\uac00" <= ch <= "\ud7a3" for ch in caught.value.user_message)


@pytest.mark.parametrize("name", ["truncated_jpeg", "truncated_png"])
def test_truncated_files_fail_even_though_the_header_is_fine(name: str) -> None:
    data, _ = HOSTILE[name]
    assert Image.open(io.BytesIO(data)).size == (320, 240)  # the header alone looks valid
    with pytest.raises(TruncatedImageError):
        decode_image(data)


def test_decompression_bomb_is_rejected_from_the_header_without_memory() -> None:
    data, _ = HOSTILE["png_real_bomb"]
    assert len(data) < 100_000  # 48 megapixels in a few kB
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(TooManyPixelsError):
        decode_image(data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"decoding a bomb allocated {peak} bytes"
    assert elapsed < 0.5


def test_pixel_limit_is_a_setting() -> None:
    data = corpus.encode(corpus.pattern((200, 100)), "PNG")
    assert decode_image(data, max_pixels=20_000).image.size == (200, 100)
    with pytest.raises(TooManyPixelsError):
        decode_image(data, max_pixels=19_999)


def test_pillow_bomb_warning_becomes_too_many_pixels() -> None:
    # 100 MP is above Pillow's own warning threshold (89 MP) but below our raised limit.
    data = corpus.png_header_bomb(10_000, 10_000)
    with pytest.raises(TooManyPixelsError):
        decode_image(data, max_pixels=200_000_000)


def test_byte_limit_is_checked_before_decoding() -> None:
    data = GOOD["png"]
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_bytes=len(data) - 1)
    assert decode_image(data, max_bytes=len(data)).image.size == corpus.PATTERN_SIZE


def test_large_photo_is_downscaled_once_and_scale_is_kept() -> None:
    data = corpus.large_jpeg((4000, 3000))
    started = time.perf_counter()
    decoded = decode_image(data, max_side=1280)
    elapsed = time.perf_counter() - started
    assert decoded.image.size == (1280, 960)
    assert decoded.original_size == (4000, 3000)
    assert decoded.scale == pytest.approx((3.125, 3.125))
    assert_pattern(decoded.image, (1280, 960))
    assert elapsed < 1.0  # JPEG draft mode: libjpeg decodes at 1/2 scale, not all 12 MP


def test_jpeg_draft_decodes_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-resolution decode never happens for a big JPEG (draft picks 1/2 here)."""
    loaded_sizes: list[tuple[int, int]] = []
    real_load = intake._load_fully

    def recording_load(image: Image.Image) -> None:
        real_load(image)
        loaded_sizes.append(image.size)

    monkeypatch.setattr(intake, "_load_fully", recording_load)
    decode_image(corpus.large_jpeg((4000, 3000)), max_side=1280)
    assert loaded_sizes == [(2000, 1500)]


def test_large_rotated_photo_reports_post_exif_size() -> None:
    decoded = decode_image(corpus.large_jpeg((4000, 3000), orientation=6), max_side=1000)
    assert decoded.original_size == (4000, 3000)
    assert decoded.image.size == (1000, 750)
    assert_pattern(decoded.image, (1000, 750))


def test_boxes_map_back_to_original_pixels() -> None:
    decoded = DecodedImage(image=Image.new("RGB", (1000, 750)), original_size=(4000, 3000), format="JPEG")
    assert decoded.to_original((100, 50, 500, 700)) == pytest.approx((400, 200, 2000, 2800))
    # boxes are clipped to the image
    assert decoded.to_original((-10, -5, 1200, 800)) == pytest.approx((0, 0, 4000, 3000))


def test_small_images_are_not_upscaled() -> None:
    decoded = decode_image(corpus.encode(corpus.pattern((40, 30)), "PNG"), max_side=1280)
    assert decoded.image.size == (40, 30)


def test_image_errors_survive_pickling() -> None:
    """They cross the worker → bot process boundary."""
    for data, _ in HOSTILE.values():
        with pytest.raises(ImageError) as caught:
            decode_image(data)
        clone = pickle.loads(pickle.dumps(caught.value))
        assert type(clone) is type(caught.value)
        assert clone.user_message == caught.value.user_message


def test_intake_stays_torch_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys, inference.images, inference.text.labels, inference.text.keywords; "
        "bad = [m for m in ('torch', 'ultralytics', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
