"""AI-Hub face-emotion JSON → YOLO labels: encodings, EXIF rotation, mapping, skips, split, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw, ImageOps

from training import convert_aihub
from training.convert_aihub import convert

SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "aihub_face_labels_sample"


def record(filename: str, expression: str, box: tuple[float, float, float, float], **annots: object) -> dict:
    x1, y1, x2, y2 = box
    boxes = {"minX": x1, "minY": y1, "maxX": x2, "maxY": y2}
    data: dict[str, object] = {
        "filename": filename,
        "faceExp_uploader": expression,
        "annot_A": {"boxes": boxes, "faceExp": expression},
        "annot_B": {"boxes": boxes, "faceExp": expression},
        "annot_C": {"boxes": boxes, "faceExp": expression},
    }
    data.update(annots)
    return data


def write_labels(path: Path, records: list[dict], encoding: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(records, ensure_ascii=False).encode(encoding))
    return path


def write_photo(path: Path, size: tuple[int, int], orientation: int = 1, rect: tuple | None = None) -> Path:
    """A grey JPEG of stored ``size`` with an EXIF orientation and an optional white rectangle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (40, 40, 40))
    if rect is not None:
        ImageDraw.Draw(image).rectangle(rect, fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif.tobytes())
    return path


def read_yolo(out: Path, stem: str) -> list[list[float]]:
    files = list(out.glob(f"labels/*/{stem}.txt"))
    assert len(files) == 1, files
    return [[float(v) for v in line.split()] for line in files[0].read_text().splitlines()]


def bright_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of the white rectangle, as x1, y1, x2 (exclusive), y2 (exclusive)."""
    mask = image.convert("L").point(lambda v: 255 if v > 128 else 0)
    box = mask.getbbox()
    assert box is not None
    return box


@pytest.mark.parametrize("encoding", ["cp949", "utf-8"])
def test_encodings_mapping_and_counts(tmp_path: Path, encoding: str) -> None:
    images = tmp_path / "images"
    write_photo(images / "happy" / "a.jpg", (200, 100))
    write_photo(images / "angry" / "b.jpg", (200, 100))
    write_photo(images / "c.jpg", (200, 100))
    records = [
        record("a.jpg", "기쁨", (20, 10, 60, 50)),
        record("b.jpg", "분노", (100, 0, 200, 100)),
        record("c.jpg", "중립", (0, 0, 10, 10)),  # not mapped by default: skipped and counted
        record("c.jpg", "상처", (0, 0, 10, 10)),
        record("missing.jpg", "슬픔", (0, 0, 10, 10)),  # no such photo
    ]
    labels = write_labels(tmp_path / "labels" / "x.json", records, encoding)

    summary = convert(labels.parent, images, tmp_path / "out", val_fraction=0.0)

    assert summary.classes == ["anger", "sad", "panic", "happy"]
    assert summary.records == 5
    assert summary.skipped == {"unmapped_expression": 2, "missing_image": 1}
    assert summary.unmapped_expressions == {"중립": 1, "상처": 1}
    assert summary.boxes["train"] == {"anger": 1, "sad": 0, "panic": 0, "happy": 1}
    assert read_yolo(tmp_path / "out", "a") == [[3, 0.2, 0.3, 0.2, 0.4]]
    assert read_yolo(tmp_path / "out", "b") == [[0, 0.75, 0.5, 0.5, 1.0]]
    assert not list((tmp_path / "out").glob("labels/*/c.txt"))
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text(encoding="utf-8"))
    assert data["names"] == ["anger", "sad", "panic", "happy"]
    assert Path(data["path"], data["train"], "a.jpg").resolve() == (images / "happy" / "a.jpg").resolve()


def test_neutral_mapping_adds_fifth_class(tmp_path: Path) -> None:
    write_photo(tmp_path / "img" / "n.jpg", (100, 100))
    labels = write_labels(tmp_path / "lab.json", [record("n.jpg", "중립", (10, 10, 30, 30))], "cp949")
    mapping = convert_aihub.parse_mapping(["중립=neutral", "불안=panic"])

    summary = convert(labels, tmp_path / "img", tmp_path / "out", mapping=mapping, val_fraction=0.0)

    assert summary.classes == ["anger", "sad", "panic", "happy", "neutral"]
    assert read_yolo(tmp_path / "out", "n")[0][0] == 4


# EXIF orientation → displayed size for a 300×200 stored photo.
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_displayed_boxes_use_rotated_size(tmp_path: Path, orientation: int) -> None:
    write_photo(tmp_path / "img" / "r.jpg", (300, 200), orientation)
    # Drawn on the displayed photo: 200×300 when the orientation swaps the sides.
    labels = write_labels(tmp_path / "lab.json", [record("r.jpg", "슬픔", (20, 30, 120, 90))], "utf-8")

    summary = convert(labels, tmp_path / "img", tmp_path / "out", val_fraction=0.0)

    width, height = (200, 300) if orientation in (6, 8) else (300, 200)
    cls, cx, cy, w, h = read_yolo(tmp_path / "out", "r")[0]
    assert cls == 1
    assert (cx, cy, w, h) == pytest.approx((70 / width, 60 / height, 100 / width, 60 / height), abs=1e-6)
    assert summary.rotated_images == (orientation != 1)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_stored_boxes_follow_the_rotation(tmp_path: Path, orientation: int) -> None:
    """A white rectangle at the stored box must sit exactly under the YOLO box after exif_transpose."""
    stored_box = (40, 20, 119, 69)  # inclusive pixel corners of the rectangle
    path = write_photo(tmp_path / "img" / "s.jpg", (320, 240), orientation, rect=stored_box)
    x1, y1, x2, y2 = stored_box
    labels = write_labels(tmp_path / "lab.json", [record("s.jpg", "당황", (x1, y1, x2 + 1, y2 + 1))], "cp949")

    convert(labels, tmp_path / "img", tmp_path / "out", val_fraction=0.0, boxes_in="stored")

    with Image.open(path) as raw:
        shown = ImageOps.exif_transpose(raw)
    cls, cx, cy, w, h = read_yolo(tmp_path / "out", "s")[0]
    got = (
        (cx - w / 2) * shown.width,
        (cy - h / 2) * shown.height,
        (cx + w / 2) * shown.width,
        (cy + h / 2) * shown.height,
    )
    assert cls == 2
    assert got == pytest.approx(bright_box(shown), abs=1.5)  # JPEG edges blur by a pixel


def test_annotator_choice_and_mean(tmp_path: Path) -> None:
    write_photo(tmp_path / "img" / "m.jpg", (100, 100))
    rec = record("m.jpg", "기쁨", (0, 0, 40, 40))
    rec["annot_B"] = {"boxes": {"minX": 20, "minY": 20, "maxX": 60, "maxY": 60}}
    rec["annot_C"] = {"boxes": {"minX": 40, "minY": 40, "maxX": 80, "maxY": 80}}
    labels = write_labels(tmp_path / "lab.json", [rec], "utf-8")

    for annot, expected in {"A": 0.2, "B": 0.4, "C": 0.6, "mean": 0.4}.items():
        convert(labels, tmp_path / "img", tmp_path / annot, annot=annot, val_fraction=0.0)
        assert read_yolo(tmp_path / annot, "m")[0][1:] == pytest.approx([expected, expected, 0.4, 0.4])


def test_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    records = []
    for i in range(20):
        write_photo(tmp_path / "img" / f"{i}.jpg", (64, 64))
        records.append(record(f"{i}.jpg", "기쁨" if i % 2 else "슬픔", (0, 0, 32, 32)))
    labels = write_labels(tmp_path / "lab.json", records, "utf-8")

    first = convert(labels, tmp_path / "img", tmp_path / "a", val_fraction=0.2, seed=1)
    again = convert(labels, tmp_path / "img", tmp_path / "b", val_fraction=0.2, seed=1)

    assert first.images == {"train": 16, "val": 4}
    assert first.boxes["val"] == {"anger": 0, "sad": 2, "panic": 0, "happy": 2}
    assert sorted(p.name for p in (tmp_path / "a" / "labels" / "val").iterdir()) == sorted(
        p.name for p in (tmp_path / "b" / "labels" / "val").iterdir()
    )
    assert again.to_json() == first.to_json()


@pytest.mark.skipif(not SHARED_SAMPLES.is_dir(), reason="shared AI-Hub samples not present")
def test_shared_aihub_samples_cp949(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real distributed files (cp949) through the CLI, with stand-in photos of a phone's size."""
    records = [r for path in sorted(SHARED_SAMPLES.glob("*.json")) for r in convert_aihub.read_json(path)]
    assert len(records) == 16
    with pytest.raises(UnicodeDecodeError):
        (SHARED_SAMPLES / "val_happy_sample.json").read_text(encoding="utf-8")
    for rec in records[:-1]:  # the last photo stays missing
        write_photo(tmp_path / "img" / rec["filename"], (4032, 3024))

    convert_aihub.main(
        [
            "--labels",
            str(SHARED_SAMPLES),
            "--images",
            str(tmp_path / "img"),
            "--out",
            str(tmp_path / "out"),
            "--val-fraction",
            "0.25",
            "--copy",
        ]
    )

    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["records"] == 16
    assert summary["skipped"] == {"missing_image": 1}
    total = {
        name: summary["boxes"]["train"][name] + summary["boxes"]["val"][name] for name in summary["classes"]
    }
    assert sum(total.values()) == 15 and min(total.values()) >= 3
    first = records[0]
    boxes = first["annot_A"]["boxes"]
    stem = Path(first["filename"]).stem
    _, cx, cy, w, h = read_yolo(tmp_path / "out", stem)[0]
    assert cx == pytest.approx((boxes["minX"] + boxes["maxX"]) / 2 / 4032, abs=1e-5)
    assert cy == pytest.approx((boxes["minY"] + boxes["maxY"]) / 2 / 3024, abs=1e-5)
    assert w == pytest.approx((boxes["maxX"] - boxes["minX"]) / 4032, abs=1e-5)
    assert h == pytest.approx((boxes["maxY"] - boxes["minY"]) / 3024, abs=1e-5)
    assert (tmp_path / "out" / "images" / "train").is_dir() and not any(
        p.is_symlink() for p in (tmp_path / "out").rglob("*.jpg")
    )
    assert "missing_image" in capsys.readouterr().out


def test_cli_rejects_bad_mapping(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        convert_aihub.parse_args(["--labels", "x", "--images", "y", "--out", "z", "--map", "중립"])
