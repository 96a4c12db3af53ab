"""Second stages on face crops: small CNNs that check and re-label each face box the detector finds.

``FaceCheck`` (two classes, RGB) drops boxes that show no face; ``FaceEmotionClassifier`` (the five
emotions, grey, FER2013-sized) gives each remaining face its emotion. Both are an ``EmotionCNN``; a
config whose ``backbone`` is ``"mobilenet_v2"`` builds an ImageNet-started
``inference.models.mobile_crop.MobileCropNet`` instead (the object check's network since session 21).
The checkpoint carries its own config (class names, input size, crop margin, widths), so the
runtime needs nothing but the file: ``{"config": {...}, "model": state_dict, "metrics": {...}}``, or
for an ensemble of equally shaped networks ``"members": [state_dict, ...]`` instead of ``"model"``
(their probabilities are averaged; ``training.ensemble_face_classifier`` builds one).
Crops are taken with :func:`crop_face` — the same margin the classifier was trained with.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from inference.models.mobile_crop import FULL_DEPTH, MobileCropNet

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)  # the only batch sizes a crop network is called with
CROP_CHUNK = BATCH_SIZES[-1]  # crops per network call
VGG_BACKBONE = "vgg"
MOBILENET_BACKBONE = "mobilenet_v2"


@dataclass(frozen=True)
class ClassifierConfig:
    classes: tuple[str, ...] = ("anger", "sad", "panic", "happy", "neutral")
    size: int = 48  # square input, as FER2013
    channels: int = 1  # 1: grey (the emotion classifier, trained with FER2013); 3: RGB (the face check)
    margin: float = 0.1  # crop = box grown by this fraction of its size on every side
    widths: tuple[int, ...] = (32, 64, 128, 256)
    dropout: float = 0.3
    backbone: str = VGG_BACKBONE  # or MOBILENET_BACKBONE (RGB only; ``widths`` unused)
    depth: int = FULL_DEPTH  # MobileNetV2 feature blocks kept
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (training data, date)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("classes", "widths"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class EmotionCNN(nn.Module):
    """VGG-style blocks (two 3×3 convs, pool) → global average pool → linear."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        widths = (config.channels, *config.widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(widths)))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(widths[-1], len(config.classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        return self.head(features.mean(dim=(2, 3)))


CropNetwork = EmotionCNN | MobileCropNet


def build_network(config: ClassifierConfig) -> CropNetwork:
    """The untrained network a config describes."""
    if config.backbone == VGG_BACKBONE:
        return EmotionCNN(config)
    if config.backbone == MOBILENET_BACKBONE:
        if config.channels != 3:
            raise ValueError("a MobileNetV2 crop network takes RGB crops (channels 3)")
        return MobileCropNet(len(config.classes), config.depth, config.dropout)
    raise ValueError(f"unknown crop network backbone {config.backbone!r}")


def mirrored_logits(model: CropNetwork, batch: torch.Tensor) -> torch.Tensor:
    """The mean logits of each crop and its mirror image: cheap test-time augmentation, steadier labels
    (what the runtime and the training scripts' held-out scores use). One pass over both halves: in
    eval mode every crop is scored alone, and half the calls cost less on a CPU than the extra rows."""
    logits = model(torch.cat([batch, torch.flip(batch, dims=(3,))]))
    return logits.view(2, len(batch), -1).mean(dim=0)


def as_members(models: CropNetwork | Sequence[CropNetwork]) -> list[CropNetwork]:
    """The networks of a classifier as a list: one network is an ensemble of one."""
    return [models] if isinstance(models, nn.Module) else list(models)


def mean_probabilities(models: CropNetwork | Sequence[CropNetwork], batch: torch.Tensor) -> torch.Tensor:
    """The members' mean mirrored softmax: how ``FaceEmotionClassifier`` and the training scores label a
    crop."""
    members = as_members(models)
    return torch.stack([torch.softmax(mirrored_logits(model, batch), dim=1) for model in members]).mean(dim=0)


def network_from_state(config: ClassifierConfig, state: dict[str, torch.Tensor]) -> CropNetwork:
    """The network of ``config`` with a saved (fp16) state, back in fp32, in eval mode."""
    model = build_network(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _fuse_children(module: nn.Module) -> None:
    """Fold each BatchNorm that follows a convolution inside a ``Sequential`` into that convolution, at
    every depth (the VGG blocks; MobileNetV2's conv-BN-ReLU6 triples and inverted residuals)."""
    for child in module.children():
        _fuse_children(child)
    if not isinstance(module, nn.Sequential):
        return
    for index in reversed(range(1, len(module))):  # from the end, so the earlier indices still hold
        conv, norm = module[index - 1], module[index]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            module[index - 1] = fuse_conv_bn_eval(conv, norm)
            del module[index]


def fused_for_inference(model: CropNetwork) -> CropNetwork:
    """A copy with each BatchNorm folded into the convolution before it: the same eval-mode outputs
    with a third fewer layers to compute (the crops are tiny, so calls, not arithmetic, cost the time)."""
    fused = copy.deepcopy(model).eval()
    _fuse_children(fused)
    return fused


def padded_batch_size(count: int) -> int:
    """The smallest of ``BATCH_SIZES`` that holds ``count`` crops (``count`` ≤ ``CROP_CHUNK``)."""
    return next(size for size in BATCH_SIZES if size >= count)


def crop_face(image: Image.Image, box: Box, margin: float) -> Image.Image:
    """The face box grown by ``margin`` on each side, clipped to the image."""
    x1, y1, x2, y2 = box
    grow_x, grow_y = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, round(x1 - grow_x)), max(0, round(y1 - grow_y))
    right, bottom = min(image.width, round(x2 + grow_x)), min(image.height, round(y2 + grow_y))
    if right <= left or bottom <= top:  # a degenerate box: fall back to a 1-pixel crop, never crash
        right, bottom = min(image.width, left + 1), min(image.height, top + 1)
    return image.crop((left, top, right, bottom))


def to_tensor(crops: Sequence[Image.Image], size: int, channels: int = 1) -> torch.Tensor:
    """Grey (``channels`` 1) or RGB (3), ``size``×``size``, in [0, 1]: shape (N, channels, size, size)."""
    mode = "L" if channels == 1 else "RGB"
    arrays = [
        torch.frombuffer(
            bytearray(c.convert(mode).resize((size, size), Image.Resampling.BILINEAR).tobytes()),
            dtype=torch.uint8,
        )
        for c in crops
    ]
    pixels = torch.stack(arrays).view(len(crops), size, size, channels).permute(0, 3, 1, 2)
    return pixels.contiguous().float() / 255.0


class FaceEmotionClassifier:
    """Loaded classifier (one network or an ensemble); ``classify`` returns (class name, probability)
    per crop."""

    def __init__(
        self, models: CropNetwork | Sequence[CropNetwork], config: ClassifierConfig, device: str
    ) -> None:
        members = as_members(models)
        if not members:
            raise ValueError("a classifier needs at least one network")
        self.models = [fused_for_inference(model).to(device) for model in members]
        self.config = config
        self.device = device

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> FaceEmotionClassifier:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = ClassifierConfig.from_dict(checkpoint["config"])
        states = checkpoint["members"] if "members" in checkpoint else [checkpoint["model"]]
        models = [network_from_state(config, state) for state in states]
        logger.info(
            "crop classifier %s: classes %s, input %d, %d network(s)",
            path.name,
            config.classes,
            config.size,
            len(models),
        )
        return cls(models, config, device)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def crop(self, image: Image.Image, box: Box) -> Image.Image:
        return crop_face(image, box, self.config.margin)

    @torch.inference_mode()
    def probabilities(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """Class probabilities per crop, at most ``CROP_CHUNK`` crops per network call."""
        if not crops:
            return torch.empty(0, len(self.classes))
        return torch.cat(
            [
                self._chunk_probabilities(crops[start : start + CROP_CHUNK])
                for start in range(0, len(crops), CROP_CHUNK)
            ]
        )

    def _chunk_probabilities(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """One call, its batch padded (with copies of the last crop) to a size of ``BATCH_SIZES``.

        A worker that runs the network on every batch size from 1 to 40 keeps growing: measured with the
        MobileNetV2 object check, +0.8 GB after one pass over the sizes and +1.3 GB after two, while these
        eight sizes level off at +0.14 GB. In eval mode every crop is scored alone, so the copies change
        nothing but the batch shape."""
        batch = to_tensor(crops, self.config.size, self.config.channels)
        padded = padded_batch_size(len(crops))
        if padded > len(crops):
            batch = torch.cat([batch, batch[-1:].expand(padded - len(crops), -1, -1, -1)])
        return mean_probabilities(self.models, batch.to(self.device))[: len(crops)].cpu()

    def classify(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        if not crops:
            return []
        probs = self.probabilities(crops)
        confidence, index = probs.max(dim=1)
        return [(self.classes[i], float(c)) for i, c in zip(index.tolist(), confidence.tolist(), strict=True)]


def _half_state(model: CropNetwork) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def save_checkpoint(
    path: Path, model: CropNetwork, config: ClassifierConfig, metrics: dict[str, Any]
) -> None:
    """fp16 weights (half the size; the runtime casts back to fp32) plus config and metrics."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(config), "model": _half_state(model), "metrics": metrics}, path)


def save_ensemble(
    path: Path, models: Sequence[CropNetwork], config: ClassifierConfig, metrics: dict[str, Any]
) -> None:
    """Several networks of one config in one file, fp16 like ``save_checkpoint``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    members = [_half_state(model) for model in models]
    torch.save({"config": asdict(config), "members": members, "metrics": metrics}, path)


FACE_CLASS = "face"


class FaceCheck:
    """Second stage that asks whether a detected face box shows a face at all.

    A two-class ``EmotionCNN`` (``("other", "face")``, RGB crops; ``training.train_face_check``) that
    the detector's face boxes must pass: the detector alone either misses small faces or, at a
    threshold low enough to find them, calls wheels, paws and patterned cloth faces.
    """

    def __init__(self, classifier: FaceEmotionClassifier, threshold: float) -> None:
        if FACE_CLASS not in classifier.classes:
            raise ValueError(f"a face check needs a {FACE_CLASS!r} class, got {classifier.classes}")
        self.classifier = classifier
        self.threshold = threshold
        self.face_index = classifier.classes.index(FACE_CLASS)

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threshold: float | None = None) -> FaceCheck:
        classifier = FaceEmotionClassifier.load(path, device)
        chosen = threshold if threshold is not None else float(classifier.config.extra.get("threshold", 0.5))
        logger.info("face check %s: keeps boxes with p(face) >= %.3f", path.name, chosen)
        return cls(classifier, chosen)

    def crop(self, image: Image.Image, box: Box) -> Image.Image:
        return self.classifier.crop(image, box)

    def face_probability(self, crops: Sequence[Image.Image]) -> list[float]:
        if not crops:
            return []
        return self.classifier.probabilities(crops)[:, self.face_index].tolist()

    def is_face(self, crops: Sequence[Image.Image]) -> list[bool]:
        return [p >= self.threshold for p in self.face_probability(crops)]
