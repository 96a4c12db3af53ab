"""The ImageNet-started crop network: its starting weights, its inference copy, its checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from inference.models.face_classifier import (
    CROP_CHUNK,
    MOBILENET_BACKBONE,
    ClassifierConfig,
    build_network,
    fused_for_inference,
    padded_batch_size,
    save_checkpoint,
)
from inference.models.mobile_crop import FULL_DEPTH, MobileCropNet, load_pretrained_trunk, trunk
from inference.models.object_check import OTHER_CLASS, ObjectCheck
from tests.fixtures.tiny_models import flat_layout_weights

BROWN = Image.new("RGB", (40, 30), (120, 80, 40))


def test_pretrained_trunk_takes_each_blocks_tensors_in_order(tmp_path: Path) -> None:
    source = flat_layout_weights(tmp_path / "wheel.pt")
    model = MobileCropNet(classes=3, depth=5)
    load_pretrained_trunk(model, tmp_path / "wheel.pt")
    loaded = list(model.features.state_dict().values())
    expected = [t for k, t in source.items() if int(k.split(".")[1]) < 5]
    assert len(loaded) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(loaded, expected, strict=True))


def test_pretrained_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    source = flat_layout_weights(tmp_path / "wheel.pt")
    first = next(iter(source))
    torch.save({**source, first: torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="expected"):
        load_pretrained_trunk(MobileCropNet(classes=3, depth=2), tmp_path / "bad.pt")
    torch.save({k: v for k, v in source.items() if not k.startswith("features.1.")}, tmp_path / "short.pt")
    with pytest.raises(ValueError, match="block 1"):
        load_pretrained_trunk(MobileCropNet(classes=3, depth=2), tmp_path / "short.pt")


def test_depth_outside_mobilenet_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        trunk(FULL_DEPTH + 2)


def test_inference_copy_of_a_mobilenet_folds_batch_norm_without_changing_outputs(tmp_path: Path) -> None:
    flat_layout_weights(tmp_path / "wheel.pt")
    model = MobileCropNet(classes=4, depth=6)
    load_pretrained_trunk(model, tmp_path / "wheel.pt")
    model.eval()
    fused = fused_for_inference(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        assert torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)


def test_a_mobilenet_object_check_loads_from_its_checkpoint(tmp_path: Path) -> None:
    """The config names the backbone, so the runtime builds the right network from the file alone."""
    config = ClassifierConfig(
        classes=(OTHER_CLASS, "chair", "car"), size=24, channels=3, backbone=MOBILENET_BACKBONE, depth=4
    )
    network = build_network(config)
    assert isinstance(network, MobileCropNet)
    save_checkpoint(tmp_path / "oc.pt", network, config, {})
    check = ObjectCheck.load(tmp_path / "oc.pt", threshold=0.3)
    assert check.classes == config.classes
    probabilities = check.classifier.probabilities([BROWN, BROWN])
    assert probabilities.shape == (2, 3) and torch.allclose(probabilities.sum(dim=1), torch.ones(2))


def test_a_grey_mobilenet_is_refused() -> None:
    with pytest.raises(ValueError, match="RGB"):
        build_network(ClassifierConfig(channels=1, backbone=MOBILENET_BACKBONE))
    with pytest.raises(ValueError, match="backbone"):
        build_network(ClassifierConfig(backbone="resnet"))


def test_batches_are_padded_to_a_few_sizes_without_changing_any_crops_probabilities(tmp_path: Path) -> None:
    """The network only ever sees the batch sizes of ``BATCH_SIZES`` (a worker fed every size grows by a
    GB), and a crop's probabilities do not depend on the crops scored beside it."""
    assert [padded_batch_size(n) for n in (1, 3, 5, 7, 9, 16)] == [1, 3, 6, 8, 12, 16]
    config = ClassifierConfig(
        classes=(OTHER_CLASS, "chair", "car"), size=24, channels=3, backbone=MOBILENET_BACKBONE, depth=4
    )
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "oc.pt", build_network(config), config, {})
    check = ObjectCheck.load(tmp_path / "oc.pt")
    crops = [Image.new("RGB", (30 + i, 20 + 2 * i), (10 * i, 200 - 7 * i, 90)) for i in range(CROP_CHUNK + 3)]
    together = check.classifier.probabilities(crops)
    alone = torch.cat([check.classifier.probabilities([crop]) for crop in crops])
    assert together.shape == (len(crops), 3)
    assert torch.allclose(together, alone, atol=1e-5)
