"""The second-stage face-crop classifier: crops, checkpoint round trip, and a tiny training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.models.face_classifier import (
    ClassifierConfig,
    EmotionCNN,
    FaceEmotionClassifier,
    crop_face,
    fused_for_inference,
    mirrored_logits,
    save_checkpoint,
)
from tests.test_detector import NAMES, make_yolo_split
from training import ensemble_face_classifier, train_face_classifier


def test_crop_face_grows_the_box_and_clips() -> None:
    image = Image.new("L", (100, 80))
    assert crop_face(image, (20, 20, 60, 40), margin=0.1).size == (48, 24)  # 40×20 box + 10 % each side
    assert crop_face(image, (-10, 70, 30, 120), margin=0.0).size == (30, 10)  # clipped to the image
    assert crop_face(image, (50, 50, 50, 50), margin=0.1).size == (1, 1)  # degenerate box: never empty


def test_checkpoint_round_trip_keeps_config_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ClassifierConfig(classes=("sad", "happy", "neutral"), widths=(8, 16), margin=0.2)
    model = EmotionCNN(config).eval()
    save_checkpoint(tmp_path / "c.pt", model, config, {"note": 1})

    loaded = FaceEmotionClassifier.load(tmp_path / "c.pt", "cpu")

    assert loaded.classes == ("sad", "happy", "neutral")
    assert loaded.config.margin == 0.2
    crops = [Image.effect_noise((30, 40), 60), Image.new("RGB", (64, 64), (200, 10, 10))]
    probs = loaded.probabilities(crops)
    assert probs.shape == (2, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(2))
    with torch.no_grad():
        from inference.models.face_classifier import to_tensor

        x = to_tensor(crops, config.size)
        reference = torch.softmax((model(x) + model(torch.flip(x, dims=(3,)))) / 2, dim=1)
    assert torch.allclose(probs, reference, atol=2e-2)  # fp16 storage
    labels = loaded.classify(crops)
    assert [name for name, _ in labels] == [config.classes[i] for i in probs.argmax(1).tolist()]
    assert loaded.classify([]) == []


def test_fer_classes_are_remapped_by_name(tmp_path: Path) -> None:
    images = np.zeros((4, 48, 48), np.uint8)
    np.savez(
        tmp_path / "f.npz",
        images=images,
        labels=np.array([0, 1, 2, 1], np.uint8),
        names=np.array(["happy", "disgust", "sad"]),
    )
    x, y = train_face_classifier.load_fer(tmp_path / "f.npz", ("anger", "sad", "panic", "happy"))
    assert x.shape == (2, 1, 48, 48)
    assert y.tolist() == [3, 1]  # happy → 3, sad → 1, disgust dropped


def test_fer_limit_samples_every_class_of_a_file_sorted_by_class(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(5, dtype=np.uint8), 100)  # the shared files are sorted like this
    np.savez(
        tmp_path / "f.npz", images=np.zeros((500, 48, 48), np.uint8), labels=labels, names=np.array(NAMES)
    )
    _, y = train_face_classifier.load_fer(tmp_path / "f.npz", tuple(NAMES), limit=100)
    counts = np.bincount(y.numpy(), minlength=5)
    assert len(y) == 100 and counts.min() >= 8  # ~20 per class, not the first 100 (all "anger")
    _, again = train_face_classifier.load_fer(tmp_path / "f.npz", tuple(NAMES), limit=100)
    assert torch.equal(y, again)  # seeded


def make_fer(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, count in (("train", 40), ("validation", 10)):
        np.savez(
            root / f"fer2013_{split}.npz",
            images=rng.integers(0, 255, (count, 48, 48), dtype=np.uint8),
            labels=rng.integers(0, 5, count).astype(np.uint8),
            names=np.array(NAMES),
        )
    return root


def train_tiny(fer: Path, faces: Path, out: Path, *extra: str) -> None:
    train_face_classifier.main(
        [
            "--fer",
            str(fer),
            "--faces",
            str(faces),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch",
            "16",
            "--widths",
            "4",
            "8",
            "--threads",
            "1",
            *extra,
        ]
    )


def test_tiny_training_run_saves_a_loadable_classifier(tmp_path: Path) -> None:
    fer = make_fer(tmp_path / "fer")
    faces = make_yolo_split(tmp_path / "faces", images=10)
    out = tmp_path / "c.pt"

    train_tiny(fer, faces.parent, out, "--seed", "3", "--init-seed", "5")

    checkpoint = torch.load(out, weights_only=True)
    assert list(checkpoint["config"]["classes"]) == NAMES
    assert checkpoint["metrics"]["best_epoch"] in (1, 2)
    assert len(checkpoint["config"]["extra"]["history"]) >= 1
    assert (checkpoint["config"]["extra"]["seed"], checkpoint["config"]["extra"]["init_seed"]) == (3, 5)
    classifier = FaceEmotionClassifier.load(out, "cpu")
    ((name, confidence),) = classifier.classify([Image.new("RGB", (50, 60), (90, 90, 90))])
    assert name in NAMES and 0.0 < confidence <= 1.0


def test_init_seed_changes_the_network_but_not_the_held_out_split(tmp_path: Path) -> None:
    fer = make_fer(tmp_path / "fer")
    faces = make_yolo_split(tmp_path / "faces", images=10)
    for init_seed in ("1", "2"):
        train_tiny(fer, faces.parent, tmp_path / f"m{init_seed}.pt", "--init-seed", init_seed)
    first, second = (torch.load(tmp_path / f"m{i}.pt", weights_only=True) for i in (1, 2))
    assert not torch.equal(first["model"]["head.2.weight"], second["model"]["head.2.weight"])
    config = ClassifierConfig(widths=(4, 8))

    def held_out(seed: int) -> list[str]:
        split = train_face_classifier.split_detection_crops(faces.parent, config, NAMES, seed)
        return [name for name, _, _ in split[0]]

    assert held_out(0) == held_out(0) and len(held_out(0)) == 1  # a tenth of 10 photos, by --seed alone
    assert len({tuple(held_out(seed)) for seed in range(5)}) > 1


def test_ensemble_checkpoint_averages_its_members(tmp_path: Path) -> None:
    fer = make_fer(tmp_path / "fer")
    faces = make_yolo_split(tmp_path / "faces", images=10)
    members = [tmp_path / "m1.pt", tmp_path / "m2.pt"]
    for init_seed, path in enumerate(members, start=1):
        train_tiny(fer, faces.parent, path, "--init-seed", str(init_seed))
    out = tmp_path / "ensemble.pt"

    ensemble_face_classifier.main(
        [
            *map(str, members),
            "--out",
            str(out),
            "--fer",
            str(fer),
            "--faces",
            str(faces.parent),
            "--threads",
            "1",
        ]
    )

    checkpoint = torch.load(out, weights_only=True)
    assert len(checkpoint["members"]) == 2 and "model" not in checkpoint
    assert checkpoint["metrics"]["members"] == 2
    assert len(checkpoint["metrics"]["member_held_out_detection_acc"]) == 2
    assert [m["init_seed"] for m in checkpoint["config"]["extra"]["members"]] == [1, 2]
    crops = [Image.effect_noise((30, 40), 60), Image.new("RGB", (64, 64), (200, 10, 10))]
    each = [FaceEmotionClassifier.load(path).probabilities(crops) for path in members]
    joint = FaceEmotionClassifier.load(out)
    assert len(joint.models) == 2
    assert torch.allclose(joint.probabilities(crops), (each[0] + each[1]) / 2, atol=1e-6)


def test_ensemble_refuses_members_with_different_held_out_splits(tmp_path: Path) -> None:
    fer = make_fer(tmp_path / "fer")
    faces = make_yolo_split(tmp_path / "faces", images=10)
    train_tiny(fer, faces.parent, tmp_path / "a.pt", "--seed", "0")
    train_tiny(fer, faces.parent, tmp_path / "b.pt", "--seed", "1")
    with pytest.raises(ValueError, match="--seed"):
        ensemble_face_classifier.main(
            [str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "e.pt")]
        )
    assert not (tmp_path / "e.pt").exists()


def test_augment_keeps_shape_and_range() -> None:
    batch = torch.rand(6, 1, 48, 48)
    out = train_face_classifier.augment(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, batch)


@pytest.mark.parametrize("split", ["train"])
def test_detection_crops_follow_the_labels(tmp_path: Path, split: str) -> None:
    data = make_yolo_split(tmp_path / "faces", images=3)
    config = ClassifierConfig()
    crops = train_face_classifier.detection_crops(data.parent, split, config, NAMES)
    label_lines = sum(len(p.read_text().splitlines()) for p in (data.parent / "labels" / split).glob("*.txt"))
    assert sum(len(ids) for _, _, ids in crops) == label_lines
    assert all(c.shape[1:] == (1, 48, 48) and c.dtype == torch.uint8 for _, c, _ in crops)


def test_inference_copy_folds_batch_norm_without_changing_outputs() -> None:
    torch.manual_seed(0)
    model = EmotionCNN(ClassifierConfig(widths=(8, 16)))
    with torch.no_grad():  # non-trivial running statistics, as a trained network has
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
    model.eval()
    fused = fused_for_inference(model)
    x = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        assert torch.allclose(fused(x), model(x), atol=1e-5)
        two_passes = (model(x) + model(torch.flip(x, dims=(3,)))) / 2
        assert torch.allclose(mirrored_logits(model, x), two_passes, atol=1e-6)
