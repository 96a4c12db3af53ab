"""The face check: RGB crops, the checkpoint's threshold, the detector dropping what it rejects, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inference.models.face_classifier import (
    FACE_CLASS,
    ClassifierConfig,
    EmotionCNN,
    FaceCheck,
    FaceEmotionClassifier,
    save_checkpoint,
    to_tensor,
)
from inference.models.runtime import prepare_offline_ultralytics
from tests.conftest import make_settings
from tests.fixtures.tiny_models import make_colour_classifier, make_tiny_detector
from training import train_face_check

NAMES = ["anger", "sad", "panic", "happy", "neutral"]


def red_means_other(path: Path, threshold: float = 0.5) -> Path:
    """A face check that calls a crop "other" in proportion to its red channel, "face" otherwise."""
    weights = [[20.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    return make_colour_classifier(path, ("other", FACE_CLASS), weights, [-5.0, 0.0], threshold=threshold)


def test_rgb_crops_keep_channel_order() -> None:
    x = to_tensor([Image.new("RGB", (10, 6), (255, 0, 128))], size=4, channels=3)
    assert x.shape == (1, 3, 4, 4)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))
    grey = to_tensor([Image.new("RGB", (10, 6), (255, 0, 128))], size=4)
    assert grey.shape == (1, 1, 4, 4)


def test_face_check_threshold_comes_from_the_checkpoint_unless_given(tmp_path: Path) -> None:
    path = red_means_other(tmp_path / "fc.pt", threshold=0.3)
    red, blue = Image.new("RGB", (20, 20), (250, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 250))
    check = FaceCheck.load(path)
    assert check.threshold == 0.3
    p_red, p_blue = check.face_probability([red, blue])
    assert p_red < 0.01 and p_blue > 0.99
    assert check.is_face([red, blue]) == [False, True]
    assert FaceCheck.load(path, threshold=1.0).is_face([red, blue]) == [False, False]
    assert check.is_face([]) == []


def test_a_classifier_without_a_face_class_is_refused(tmp_path: Path) -> None:
    config = ClassifierConfig(classes=("sad", "happy"), widths=(4,))
    save_checkpoint(tmp_path / "c.pt", EmotionCNN(config), config, {})
    with pytest.raises(ValueError, match="face"):
        FaceCheck(FaceEmotionClassifier.load(tmp_path / "c.pt"), 0.5)


def test_detector_drops_the_boxes_the_face_check_rejects(tmp_path: Path, zidane_jpg: Path) -> None:
    """metadata.json naming a face check: with a check that rejects everything, no face is left; with
    one that accepts everything, the same faces as without it."""
    folder = tmp_path / "weights" / "emotion"
    make_tiny_detector(folder / "model.pt", NAMES, imgsz=64, conf=0.0)
    red_means_other(folder / "face_check.pt")
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    item = decode_image(zidane_jpg.read_bytes())
    plain = EmotionDetector.from_settings(make_settings(tmp_path / "weights"), "cpu")
    assert plain.face_check is None
    expected = plain.detect([item])[0]
    assert expected, "conf 0 must report boxes"

    for threshold, kept in ((0.0, len(expected)), (1.0, 0)):
        settings = {**metadata, "face_check": "face_check.pt", "face_check_min": threshold}
        (folder / "metadata.json").write_text(json.dumps(settings), encoding="utf-8")
        detector = EmotionDetector.from_settings(make_settings(tmp_path / "weights"), "cpu")
        assert isinstance(detector.face_check, FaceCheck) and detector.face_check.threshold == threshold
        assert len(detector.detect([item])[0]) == kept


def test_candidates_are_labelled_by_the_evaluation_rules() -> None:
    face = (0.0, 0.0, 10.0, 10.0)
    weak = (50.0, 50.0, 60.0, 60.0)  # a teacher box of low probability: neither face nor surely not
    assert train_face_check.label_candidate((1, 1, 10, 10), [face], [face, weak]) == train_face_check.FACE
    assert (
        train_face_check.label_candidate((52, 52, 62, 62), [face], [face, weak]) == train_face_check.UNKNOWN
    )
    assert train_face_check.label_candidate((100, 0, 120, 20), [face], [face, weak]) == train_face_check.OTHER


def test_tiny_training_run_from_mined_crops(tmp_path: Path) -> None:
    """Training from a cache of mined crops saves a face check that loads with its chosen threshold."""
    generator = torch.Generator().manual_seed(0)
    photos = []
    for index in range(20):
        labels = torch.tensor([1, 1, 0, 0])
        red = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
        red[labels == 0, 0] = 250  # non-faces are red here, faces are noise
        crops = torch.where(
            labels.view(4, 1, 1, 1) == 0,
            red,
            torch.randint(0, 120, (4, 3, 16, 16), generator=generator, dtype=torch.uint8),
        )
        photos.append(
            {
                "name": f"p{index}",
                "crops": crops,
                "labels": labels,
                "candidate": torch.tensor([True, False, True, False]),
            }
        )
    cache = tmp_path / "crops.pt"
    torch.save(photos, cache)
    out = tmp_path / "fc.pt"
    train_face_check.main(
        [
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--size",
            "16",
            "--widths",
            "4",
            "8",
            "--epochs",
            "3",
            "--batch",
            "16",
            "--threads",
            "1",
            "--keep",
            "0.9",
        ]
    )
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["config"]["channels"] == 3
    held_out = checkpoint["metrics"]["held_out"]  # the held-out tenth: 2 photos
    assert (held_out["faces"], held_out["false_faces"], held_out["windows"]) == (2, 2, 2)
    assert held_out["faces_kept"] >= 0.5  # the threshold keeps --keep of the true faces (1 of 2 here)
    check = FaceCheck.load(out)
    assert check.threshold == checkpoint["config"]["extra"]["threshold"]
    assert len(checkpoint["config"]["extra"]["history"]) >= 1
