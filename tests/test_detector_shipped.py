"""The shipped face-emotion weights: layout, size, metadata, and (slow) their recorded accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.settings import DEFAULT_WEIGHTS_DIR
from inference.text.labels import object_keyword
from tests.conftest import make_settings

EMOTION_DIR = DEFAULT_WEIGHTS_DIR / "emotion"
FACES_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "data.yaml"


def metadata() -> dict:
    return json.loads((EMOTION_DIR / "metadata.json").read_text(encoding="utf-8"))


def test_shipped_files_and_metadata() -> None:
    meta = metadata()
    assert (EMOTION_DIR / "model.pt").stat().st_size < 6_000_000
    # the joint everyday model: the five emotions (faces) first, then the VOC objects but person
    assert meta["classes"][:5] == ["anger", "sad", "panic", "happy", "neutral"]
    assert {"chair", "car", "dog", "cat", "bus", "pottedplant"} <= set(meta["classes"][5:])
    assert "person" not in meta["classes"]
    assert 0.0 < meta["object_conf"] < 1.0
    assert isinstance(meta["imgsz"], int) and meta["imgsz"] % 32 == 0
    assert 0.0 < meta["conf"] < 1.0
    if meta.get("classifier"):
        assert (EMOTION_DIR / meta["classifier"]).stat().st_size < 2_000_000
    # the face check is a small CNN; the object check an ImageNet-started MobileNetV2 (fp16, session 21)
    for check, limit in (("face_check", 1_000_000), ("object_check", 4_000_000)):
        if meta.get(check):
            assert (EMOTION_DIR / meta[check]).stat().st_size < limit
    for group in meta.get("object_groups", []):  # each group joins classes of this model under a keyword
        assert set(group["members"]) <= set(meta["classes"][5:]) and object_keyword(group["label"])
    metrics = meta["metrics"]
    assert 0.0 < metrics["box"]["map50"] <= 1.0
    assert set(metrics["box"]["per_class"]) == set(meta["classes"][:5])  # close-ups: the emotions
    everyday = meta["everyday_metrics"]
    assert everyday["conf"] == meta["conf"] and everyday["object_conf"] == meta["object_conf"]
    assert everyday["faces"]["boxes_over_40pct_without_such_a_face"] == 0
    assert everyday["honesty"]["mood_claim_share"] <= 0.05
    assert 0.0 < everyday["object_map"]["at_conf_0.001"]["map50"] <= 1.0  # the bot's own objects, VOC val
    naming = meta.get("object_naming")
    if naming:  # the check names classes: its threshold is a score, one object per class and place
        assert (
            0.0 < naming["power"] <= 1.0
            and 0.0 < naming["nms_iou"] < 1.0
            and 0.0 < meta["object_check_min"] < 1.0
        )
    assert metrics["conf"] == meta["conf"]  # the accuracy was measured at the threshold the bot uses
    readme = (EMOTION_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "workenv-dayet" in readme and "yip-chun-kit-y2buh" in readme


def test_shipped_detector_loads_as_the_bot_loads_it(zidane_jpg: Path) -> None:
    from inference.models.runtime import prepare_offline_ultralytics

    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    detector = EmotionDetector.from_settings(make_settings(DEFAULT_WEIGHTS_DIR), "cpu")
    assert detector.names == metadata()["classes"]
    assert detector.runner.imgsz == metadata()["imgsz"]
    assert (detector.classifier is not None) == bool(metadata().get("classifier"))
    assert (detector.face_check is not None) == bool(metadata().get("face_check"))
    assert (detector.object_check is not None) == bool(metadata().get("object_check"))
    assert (detector.object_naming is not None) == bool(metadata().get("object_naming"))
    faces = detector.detect([decode_image(zidane_jpg.read_bytes())])[0]
    assert all(f.label in detector.names for f in faces)


def test_the_mirror_pass_sees_the_same_bus(bus_jpg: Path) -> None:
    """``predict_with_mirror`` (one batch of photo + mirror) finds bus.jpg's bus in both views, and
    mapped back the mirror's box lies on the photo's; fused, it is one bus with the mean confidence."""
    from inference.models.runtime import prepare_offline_ultralytics

    prepare_offline_ultralytics()
    from PIL import Image

    from inference.models.detect import EmotionDetector, fuse_mirrored, mirrored
    from inference.results import box_iou

    detector = EmotionDetector.from_settings(make_settings(DEFAULT_WEIGHTS_DIR), "cpu")
    photo = Image.open(bus_jpg).convert("RGB")
    (own,), (flipped,) = detector.runner.predict_with_mirror([photo])
    alone = detector.runner.predict([photo])[0]  # the batch of two changes nothing but float rounding
    assert [b.label for b in own] == [b.label for b in alone]
    assert [b.confidence for b in own] == pytest.approx([b.confidence for b in alone], abs=1e-4)
    bus = max((b for b in own if b.label == "bus"), key=lambda b: b.confidence)
    bus_mirrored = max(
        (b for b in mirrored(flipped, photo.width) if b.label == "bus"), key=lambda b: b.confidence
    )
    assert box_iou(bus.box, bus_mirrored.box) > 0.8
    fused = [b for b in fuse_mirrored([bus], [bus_mirrored]) if b.label == "bus"]
    assert len(fused) == 1 and fused[0].confidence == pytest.approx(
        (bus.confidence + bus_mirrored.confidence) / 2
    )
    assert detector.object_flip == bool(metadata().get("object_flip", False))


def test_bus_jpg_shows_its_two_camera_facing_men_and_no_made_up_mood(bus_jpg: Path) -> None:
    """The shipped size finds no face in bus.jpg (810×1080, faces ~40 px); the second look at its
    larger size finds both men facing the camera, and neither gets a mood it barely reads, so the
    keywords stay about the bus."""
    from inference.models.runtime import prepare_offline_ultralytics

    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector
    from inference.text.keywords import build_keywords

    detector = EmotionDetector.from_settings(make_settings(DEFAULT_WEIGHTS_DIR), "cpu")
    assert detector.second_look is not None and detector.second_look.imgsz > detector.runner.imgsz
    ((faces, objects),) = detector.detect_all([decode_image(bus_jpg.read_bytes())])
    heads = {"left man": (80, 380, 190, 520), "middle man": (230, 380, 340, 520)}  # pixels of bus.jpg
    centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces]
    found = {
        name for name, (x0, y0, x1, y1) in heads.items() for x, y in centres if x0 < x < x1 and y0 < y < y1
    }
    assert len(faces) == 2 and found == set(heads)
    assert build_keywords(faces, objects, max_keywords=4) == ["버스"]


def test_zidane_jpg_shows_both_men(zidane_jpg: Path) -> None:
    """zidane.jpg (1280×720): Ancelotti facing the camera, and Zidane in profile, head tilted, shouting.
    The model finds Zidane's face in the mirror image only; ``face_flip`` keeps it (mapped back)."""
    from inference.models.runtime import prepare_offline_ultralytics

    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    detector = EmotionDetector.from_settings(make_settings(DEFAULT_WEIGHTS_DIR), "cpu")
    assert detector.face_flip
    faces = detector.detect([decode_image(zidane_jpg.read_bytes())])[0]
    heads = {"Ancelotti": (880, 60, 1090, 320), "Zidane": (540, 230, 700, 450)}  # pixels of zidane.jpg
    centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces]
    found = {
        name for name, (x0, y0, x1, y1) in heads.items() for x, y in centres if x0 < x < x1 and y0 < y < y1
    }
    assert len(faces) == 2 and found == set(heads)


@pytest.mark.slow
@pytest.mark.skipif(not FACES_DATA.exists(), reason="shared faces set not present")
def test_recorded_dominant_face_accuracy_is_reproduced(tmp_path: Path) -> None:
    """The bot's path over the whole val split gives the accuracy written into metadata.json."""
    from inference.models.runtime import prepare_offline_ultralytics

    prepare_offline_ultralytics()
    from inference.models.detect import EmotionDetector
    from training.evaluate_detector import dataset, pipeline_accuracy

    settings = make_settings(DEFAULT_WEIGHTS_DIR)
    detector = EmotionDetector.from_settings(settings, "cpu")
    _, samples = dataset(FACES_DATA, "val")
    result = pipeline_accuracy(detector, samples, settings)
    recorded = metadata()["metrics"]["dominant_face_accuracy"]
    expected = recorded["with_classifier"] if detector.classifier is not None else recorded["detector_only"]
    assert result["dominant_face_accuracy"] == pytest.approx(expected, abs=0.01)
