"""Detector training, shipping, evaluation and runtime loading, on tiny fixture data, offline.

The conftest network guard is active in every test: a font or weights download would fail them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from inference.models.face_classifier import ClassifierConfig, EmotionCNN, save_checkpoint
from inference.models.runtime import prepare_offline_ultralytics
from inference.text.labels import emotion_keyword
from tests.conftest import make_settings
from tests.fixtures.tiny_models import make_tiny_detector

NAMES = ["anger", "sad", "panic", "happy", "neutral"]
RESEARCH_NAMES = ["anger", "sad", "panic", "happy"]


def make_yolo_split(root: Path, images: int = 6, size: int = 96, seed: int = 0) -> Path:
    """A YOLO set with coloured 'faces' (ellipses) on noise, train and val, plus one background image."""
    rng = random.Random(seed)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(images):
            image = Image.effect_noise((size, size), 40).convert("RGB")
            draw = ImageDraw.Draw(image)
            lines = []
            for _ in range(1 + i % 2):
                w, h = rng.randint(size // 4, size // 2), rng.randint(size // 4, size // 2)
                x, y = rng.randint(0, size - w), rng.randint(0, size - h)
                cls = rng.randrange(len(NAMES))
                draw.ellipse((x, y, x + w, y + h), fill=(60 * cls, 200, 255 - 50 * cls))
                lines.append(
                    f"{cls} {(x + w / 2) / size:.5f} {(y + h / 2) / size:.5f} {w / size:.5f} {h / size:.5f}"
                )
            image.save(root / "images" / split / f"{split}{i}.jpg")
            (root / "labels" / split / f"{split}{i}.txt").write_text("\n".join(lines) + "\n")
        Image.effect_noise((size, size), 40).convert("RGB").save(root / "images" / split / "background.jpg")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {json.dumps(NAMES)}\n")
    return data


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_split(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fixture_data: Path) -> Path:
    """One epoch of yolov10n from its yaml (no download possible), shipped to weights/emotion."""
    from training import train_detector

    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "weights" / "emotion"
    train_detector.main(
        [
            "--base",
            "yolov10n.yaml",
            "--data",
            str(fixture_data),
            "--imgsz",
            "64",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--workers",
            "0",
            "--threads",
            "1",
            "--cache",
            "none",
            "--no-plots",
            "--project",
            str(tmp / "runs"),
            "--name",
            "tiny",
            "--out",
            str(out),
            "--conf",
            "0.2",
            *("--optimizer", "AdamW", "--lr0", "0.002", "--lrf", "0.1", "--warmup-epochs", "0"),
        ]
    )
    return out


def test_tiny_training_ships_loadable_weights(trained: Path) -> None:
    prepare_offline_ultralytics()
    from ultralytics import YOLO

    model_file = trained / "model.pt"
    model = YOLO(str(model_file))
    assert [model.names[i] for i in sorted(model.names)] == NAMES
    assert model_file.stat().st_size < 6_000_000  # full-width yolov10n, stripped and fp16
    metadata = json.loads((trained / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["classes"] == NAMES
    assert metadata["imgsz"] == 64
    assert metadata["conf"] == 0.2
    assert metadata["training"]["epochs_completed"] == 1
    assert metadata["training"]["model"] == "yolov10n.yaml"
    optimizer = {key: metadata["training"][key] for key in ("optimizer", "lr0", "lrf", "warmup_epochs")}
    assert optimizer == {"optimizer": "AdamW", "lr0": 0.002, "lrf": 0.1, "warmup_epochs": 0.0}
    results = list(model.predict(Image.new("RGB", (64, 64)), imgsz=64, verbose=False))
    assert len(results) == 1 and getattr(results[0], "boxes", None) is not None


def test_ship_only_from_a_run_folder(trained: Path, tmp_path: Path) -> None:
    """A stopped run is shipped from its folder (best.pt) with a classifier; the run keeps its checkpoint."""
    from training import train_detector

    run = next((trained.parent.parent / "runs").iterdir())
    out = tmp_path / "emotion"
    out.mkdir()
    (out / "metadata.json").write_text('{"classifier": "stale.pt", "metrics": {"map50": 0.9}}')
    classifier = tiny_classifier(tmp_path / "face_classifier.pt", ("sad", "happy"))
    face_check = tiny_classifier(tmp_path / "face_check.pt", ("other", "face"))
    object_check = tiny_classifier(tmp_path / "object_check.pt", ("other", "chair"))

    stages = ["--classifier", str(classifier), "--face-check", str(face_check)]
    stages += ["--object-check", str(object_check)]
    train_detector.main(["--ship-only", str(run), "--out", str(out), "--conf", "0.3", *stages])

    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["conf"] == 0.3 and metadata["classes"] == NAMES and metadata["imgsz"] == 64
    assert metadata["classifier"] == "face_classifier.pt" and (out / "face_classifier.pt").exists()
    assert metadata["face_check"] == "face_check.pt" and (out / "face_check.pt").exists()
    assert metadata["object_check"] == "object_check.pt" and (out / "object_check.pt").exists()
    assert "metrics" not in metadata  # a fresh file: the old model's numbers don't describe this one
    assert "CC BY 4.0" in metadata["licences"]["data"]
    assert (run / "weights" / "best.pt").exists()

    # Shipping again with the classifier already in the folder (the usual re-ship) keeps it.
    shipped = out / "face_classifier.pt"
    train_detector.main(["--ship-only", str(run), "--out", str(out), "--classifier", str(shipped)])
    reshipped = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert reshipped["classifier"] == shipped.name
    assert "face_check" not in reshipped and "object_check" not in reshipped  # not asked for: none runs
    assert shipped.stat().st_size == classifier.stat().st_size


def fake_run(folder: Path, model: str, epochs: int, seconds: float) -> Path:
    """An ultralytics run folder as far as the training summary reads it: args.yaml + results.csv."""
    (folder / "weights").mkdir(parents=True)
    (folder / "args.yaml").write_text(f"model: {model}\nimgsz: 256\nepochs: 100\n", encoding="utf-8")
    rows = [f"{e},{seconds * e / epochs},{0.1 * e}" for e in range(1, epochs + 1)]
    header = "epoch,time,metrics/mAP50-95(B)"
    (folder / "results.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return folder


def test_training_summary_follows_a_run_continued_from_another(tmp_path: Path) -> None:
    """A run started from another run's last.pt records that run too: the shipped model's full history."""
    from training.train_detector import _training_summary

    first = fake_run(tmp_path / "runs" / "first", "yolov10n.yaml", epochs=20, seconds=5814)
    checkpoint = str(first / "weights" / "last.pt")
    second = fake_run(tmp_path / "runs" / "second", checkpoint, epochs=36, seconds=5580)

    summary = _training_summary(second)

    assert summary["epochs_completed"] == 36 and summary["best_epoch"] == 36
    earlier = summary["continued_from"]
    assert earlier["run"] == "first" and earlier["model"] == "yolov10n.yaml"
    assert earlier["epochs_completed"] == 20 and earlier["train_hours"] == round(5814 / 3600, 3)
    assert "continued_from" not in earlier


def tiny_classifier(path: Path, classes: tuple[str, ...]) -> Path:
    import torch

    torch.manual_seed(0)
    config = ClassifierConfig(classes=classes, widths=(4, 8))
    save_checkpoint(path, EmotionCNN(config), config, {})
    return path


@pytest.fixture(scope="module")
def tiny_emotion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conftest's tiny random detector (conf 0: it reports boxes) and a random classifier."""
    folder = tmp_path_factory.mktemp("tiny-emotion") / "emotion"
    make_tiny_detector(folder / "model.pt", NAMES, imgsz=64, conf=0.0)
    tiny_classifier(folder / "face_classifier.pt", ("anger", "sad", "panic", "happy"))
    return folder


def test_evaluation_on_fixture_split(tiny_emotion: Path, fixture_data: Path, tmp_path: Path) -> None:
    from training import evaluate_detector

    out = tmp_path / "eval"
    report = evaluate_detector.evaluate(
        evaluate_detector.parse_args(
            [
                "--weights",
                str(tiny_emotion / "model.pt"),
                "--data",
                str(fixture_data),
                "--split",
                "val",
                "--classifier",
                str(tiny_emotion / "face_classifier.pt"),
                "--conf-grid",
                "0.0",
                "0.5",
                "1.0",
                "--latency-images",
                "3",
                "--threads",
                "1",
                "--out",
                str(out),
                "--update-metadata",
            ]
        )
    )
    assert report["images"] == 7
    box = report["box"]
    assert 0.0 <= box["map50"] <= 1.0 and 0.0 <= box["map50_95"] <= box["map50"] + 1e-9
    assert set(box["per_class"]) <= set(NAMES)
    assert (out / "confusion_matrix.png").exists()
    assert any((out / name).exists() for name in ("BoxPR_curve.png", "PR_curve.png"))

    # The bot's own path (EmotionDetector.detect) and the threshold sweep agree at the same conf.
    for key in ("detector_only", "with_classifier"):
        assert report[key]["images_with_faces"] == 6
        assert report[key]["background_images"] == 1
        assert report[key]["single_face_images"] == 3
        assert report["conf_grid"][key]["0"] == report[key]["dominant_face_accuracy"]
        assert report["conf_grid"][key]["1"] == 0.0  # nothing reaches conf 1: every answer is wrong
        assert 0.0 <= report["bot_path_map"][key]["map50"] <= 1.0
        assert 0.0 <= report["bot_faces_map"][key]["map50"] <= 1.0
        confusion = report[key]["confusion"]
        assert sum(sum(row.values()) for row in confusion.values()) == 6
    classifier_labels = {p for row in report["with_classifier"]["confusion"].values() for p in row}
    assert classifier_labels <= {"anger", "sad", "panic", "happy"}  # the classifier's own classes
    assert report["latency"]["photos"] == 3 and report["latency"]["p50_ms"] > 0
    assert report["latency"]["with_classifier_p50_ms"] > 0

    metadata = json.loads((tiny_emotion / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["metrics"]["box"]["map50"] == box["map50"]
    assert (
        metadata["metrics"]["dominant_face_accuracy"]["with_classifier"]
        == (report["with_classifier"]["dominant_face_accuracy"])
    )
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == report


def test_dominant_face_rules() -> None:
    from inference.models.detect import RawBox
    from training.evaluate_detector import Sample, dominant_label, suggest_conf

    sample = Sample(Path("x.jpg"), [("sad", (0, 0, 10, 10)), ("happy", (0, 0, 30, 30))])
    assert sample.dominant() == "happy"
    assert Sample(Path("y.jpg"), []).dominant() is None
    assert not sample.near_tie() and not Sample(Path("z.jpg"), [("sad", (0, 0, 10, 10))]).near_tie()
    grid = Sample(Path("g.jpg"), [("sad", (0, 0, 10, 10)), ("happy", (10, 0, 20, 10.5))])
    assert grid.near_tie() and grid.dominant() == "happy"  # 5 % larger: a near-tie, still the dominant
    boxes = [RawBox("anger", 0.9, (0, 0, 10, 10)), RawBox("happy", 0.3, (0, 0, 50, 50))]
    assert dominant_label(None, boxes, None, conf=0.25) == "happy"  # the largest face wins, not the surest
    assert dominant_label(None, boxes, None, conf=0.5) == "anger"
    assert dominant_label(None, boxes, None, conf=0.95) is None
    assert suggest_conf({"0.1": 0.70, "0.2": 0.695, "0.3": 0.66}) == 0.2


@pytest.mark.parametrize("names", [RESEARCH_NAMES, NAMES], ids=["4-class research", "5-class shipped"])
def test_runtime_loads_both_formats(tmp_path: Path, names: list[str], zidane_jpg: Path) -> None:
    """inference.models.detect loads a 4- or 5-class model and maps class names to Korean keywords."""
    weights = tmp_path / "weights"
    make_tiny_detector(weights / "emotion" / "model.pt", names, imgsz=64, conf=0.0)
    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    detector = EmotionDetector.from_settings(make_settings(weights), "cpu")
    assert detector.names == names
    assert detector.classifier is None
    faces = detector.detect([decode_image(zidane_jpg.read_bytes())])[0]
    assert faces, "conf 0 must report boxes"
    expected = {"anger": "분노", "sad": "슬픔", "panic": "공포", "happy": "기쁨", "neutral": None}
    for face in faces:
        assert face.label in names
        assert face.keyword == expected[face.label] == emotion_keyword(face.label)


def test_runtime_relabels_with_the_shipped_classifier(tmp_path: Path, zidane_jpg: Path) -> None:
    """metadata.json naming a classifier makes every face carry the classifier's label."""
    folder = tmp_path / "weights" / "emotion"
    make_tiny_detector(folder / "model.pt", NAMES, imgsz=64, conf=0.0)
    tiny_classifier(folder / "face_classifier.pt", ("sad", "happy"))
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    (folder / "metadata.json").write_text(json.dumps({**metadata, "classifier": "face_classifier.pt"}))
    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    detector = EmotionDetector.from_settings(make_settings(tmp_path / "weights"), "cpu")
    item = decode_image(zidane_jpg.read_bytes())
    faces = detector.detect([item])[0]
    assert faces and {f.label for f in faces} <= {"sad", "happy"}
    raw = EmotionDetector(detector.runner, None).detect([item])[0]
    # the classifier's label, the detector's confidence (how surely it is a face)
    assert sorted(f.confidence for f in faces) == sorted(f.confidence for f in raw)
    unlabelled = EmotionDetector(detector.runner, None).detect([item])[0]
    assert [f.box for f in faces] == [f.box for f in unlabelled]  # same boxes, new labels


class SimulatedKillError(RuntimeError):
    """Stands in for a session ending mid-run: raised right after the first epoch's checkpoint."""


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(fixture_data: Path, tmp_path: Path) -> None:
    from training import train_detector

    args = train_detector.parse_args(
        [
            "--data",
            str(fixture_data),
            "--imgsz",
            "64",
            "--epochs",
            "2",
            "--batch",
            "4",
            "--workers",
            "0",
            "--threads",
            "1",
            "--cache",
            "none",
            "--no-plots",
            "--project",
            str(tmp_path),
            "--name",
            "killed",
            "--no-ship",
        ]
    )

    def kill(_trainer: object) -> None:
        raise SimulatedKillError

    with pytest.raises(SimulatedKillError):
        train_detector.train(args, callbacks={"on_model_save": kill})
    run = tmp_path / "killed"
    assert len((run / "results.csv").read_text().splitlines()) == 2  # header + epoch 1

    # Resumed without repeating --no-ship: the run remembers it and ships nothing.
    shipped = tmp_path / "shipped"
    train_detector.main(["--resume", str(run), "--out", str(shipped)])

    rows = (run / "results.csv").read_text().splitlines()
    assert [row.split(",")[0].strip() for row in rows[1:]] == ["1", "2"]
    assert not shipped.exists()


def test_bot_path_map_scores_perfect_and_wrong_detections() -> None:
    from inference.images import DecodedImage
    from inference.models.detect import RawBox
    from training.evaluate_detector import Sample, bot_path_map

    # A working image at half the photo's size: boxes must be mapped back before matching.
    item = DecodedImage(image=Image.new("RGB", (50, 40)), original_size=(100, 80), format="JPEG")
    samples = [
        Sample(Path("a.jpg"), [("happy", (10.0, 10.0, 50.0, 60.0)), ("sad", (60.0, 0.0, 100.0, 40.0))])
    ]
    perfect = [RawBox("happy", 0.9, (5.0, 5.0, 25.0, 30.0)), RawBox("sad", 0.8, (30.0, 0.0, 50.0, 20.0))]
    swapped = [RawBox("sad", 0.9, (5.0, 5.0, 25.0, 30.0)), RawBox("happy", 0.8, (30.0, 0.0, 50.0, 20.0))]

    good = bot_path_map(samples, [(item, perfect)], None, NAMES)
    bad = bot_path_map(samples, [(item, swapped)], None, NAMES)

    assert good["map50"] == pytest.approx(1.0, abs=0.01) and good["map50_95"] == pytest.approx(1.0, abs=0.01)
    assert set(good["per_class_ap50"]) == {"happy", "sad"}
    assert bad["map50"] == 0.0


class MirrorStub:
    """A runner whose mirror-image call returns the given boxes (in the mirror's pixels)."""

    def __init__(self, mirror: list, conf: float = 0.001) -> None:
        self.mirror = mirror
        self.conf = conf
        self.calls = 0

    def predict(self, images: list) -> list:
        self.calls += len(images)
        return [list(self.mirror) for _ in images]


def test_bot_face_boxes_keep_one_box_per_face_and_with_face_flip_the_mirrors_faces() -> None:
    """The bot's faces: a duplicate box of one face goes; with ``face_flip`` a face only the mirror image
    shows is added, mapped back, which lifts the recall the mAP sees."""
    from inference.images import DecodedImage
    from inference.models.detect import RawBox
    from training.evaluate_detector import Sample, bot_face_boxes, bot_path_map

    item = DecodedImage(image=Image.new("RGB", (100, 80)), original_size=(100, 80), format="JPEG")
    samples = [
        Sample(Path("a.jpg"), [("happy", (10.0, 10.0, 40.0, 50.0)), ("sad", (60.0, 10.0, 90.0, 50.0))])
    ]
    photo = [RawBox("happy", 0.9, (10.0, 10.0, 40.0, 50.0)), RawBox("sad", 0.3, (11.0, 10.0, 40.0, 50.0))]
    mirror = [RawBox("sad", 0.7, (10.0, 10.0, 40.0, 50.0))]  # x 60-90 in the photo

    plain = bot_face_boxes(MirrorStub(mirror), [(item, photo)], face_flip=False)
    assert [(b.label, b.confidence) for b in plain[0][1]] == [("happy", 0.9)]
    runner = MirrorStub(mirror)
    flipped = bot_face_boxes(runner, [(item, photo)], face_flip=True)
    assert [(b.label, b.box) for b in flipped[0][1]] == [
        ("happy", (10.0, 10.0, 40.0, 50.0)),
        ("sad", (60.0, 10.0, 90.0, 50.0)),
    ]
    assert runner.calls == 1
    assert (
        bot_path_map(samples, flipped, None, NAMES)["map50"]
        > bot_path_map(samples, plain, None, NAMES)["map50"]
    )


def test_mean_ap_counts_boxes_on_photos_without_that_object_as_false() -> None:
    """A confident box on a photo where nothing is labelled ranks above the right one and halves the AP;
    ranked below it, it costs nothing."""
    from training.evaluate_detector import mean_ap

    truths = [[(0, (0.0, 0.0, 10.0, 10.0))], []]
    right = [(0, 0.5, (0.0, 0.0, 10.0, 10.0))]
    assert mean_ap(truths, [right, []], ["chair"])["map50"] == pytest.approx(1.0, abs=0.01)
    above = mean_ap(truths, [right, [(0, 0.9, (0.0, 0.0, 10.0, 10.0))]], ["chair"])
    below = mean_ap(truths, [right, [(0, 0.1, (0.0, 0.0, 10.0, 10.0))]], ["chair"])
    assert above["map50"] == pytest.approx(0.5, abs=0.05)
    assert below["map50"] == pytest.approx(1.0, abs=0.01)
    assert mean_ap([[], []], [[], []], ["chair"])["map50"] == 0.0
