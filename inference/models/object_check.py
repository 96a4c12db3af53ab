"""The object check: a second look at each object box a joint everyday detector finds.

The everyday detector (``weights/emotion/model.pt``) had only CPU epochs for its objects: at a threshold
where its object keywords are right 85% of the time it names an eighth of the objects in a photo; at a
lower threshold it names three times as many, and as many wrong ones. The check is a crop classifier
(``inference.models.face_classifier.FaceEmotionClassifier``) with one class per object plus ``other``,
trained by ``training.train_object_check`` on the detector's own boxes: until session 20 the face check's
small CNN, since session 21 an ImageNet-started MobileNetV2 (``inference.models.mobile_crop``), which
knows what things look like before it sees a VOC crop. A box stays when the check gives the detector's
class at least ``threshold``: the detector then runs at a lower object threshold and keeps most of what
it finds right while losing most of what it finds wrong. Since session 23 the shipped metadata names
objects instead (``object_naming``, ``inference.models.detect.ObjectNaming``): each box gives the classes
the check sees in it (``object_probabilities``), scored with the detector's confidence, and
``threshold`` applies to that score."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from inference.models.face_classifier import Box, FaceEmotionClassifier

logger = logging.getLogger(__name__)

OTHER_CLASS = "other"


class ObjectCheck:
    """``keeps(crops, labels)``: does each crop show the object class the detector named?"""

    def __init__(self, classifier: FaceEmotionClassifier, threshold: float) -> None:
        if OTHER_CLASS not in classifier.classes:
            raise ValueError(f"an object check needs an {OTHER_CLASS!r} class, got {classifier.classes}")
        self.classifier = classifier
        self.threshold = threshold
        self.index = {name: i for i, name in enumerate(classifier.classes)}

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threshold: float | None = None) -> ObjectCheck:
        classifier = FaceEmotionClassifier.load(path, device)
        chosen = threshold if threshold is not None else float(classifier.config.extra.get("threshold", 0.5))
        logger.info("object check %s: keeps boxes with p(class) >= %.3f", path.name, chosen)
        return cls(classifier, chosen)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.classifier.classes

    def crop(self, image: Image.Image, box: Box) -> Image.Image:
        return self.classifier.crop(image, box)

    def class_probability(self, crops: Sequence[Image.Image], labels: Sequence[str]) -> list[float]:
        """p(the detector's label) per crop; a label the check does not know passes unchecked (1.0)."""
        if not crops:
            return []
        probs = self.classifier.probabilities(crops)
        return [
            float(row[self.index[label]]) if label in self.index else 1.0
            for row, label in zip(probs, labels, strict=True)
        ]

    def group_probability(self, crops: Sequence[Image.Image], members: Sequence[str]) -> list[float]:
        """p(any of ``members``) per crop: the sum of the members' probabilities the check knows."""
        if not crops:
            return []
        columns = [self.index[m] for m in members if m in self.index]
        return self.classifier.probabilities(crops)[:, columns].sum(dim=1).tolist()

    def keeps(self, crops: Sequence[Image.Image], labels: Sequence[str]) -> list[bool]:
        return [p >= self.threshold for p in self.class_probability(crops, labels)]

    def object_probabilities(self, crops: Sequence[Image.Image]) -> list[dict[str, float]]:
        """p(class) per crop for every object class (``other`` left out): what the crop shows, whatever
        the detector called it."""
        if not crops:
            return []
        names = [(i, name) for i, name in enumerate(self.classes) if name != OTHER_CLASS]
        return [{name: float(row[i]) for i, name in names} for row in self.classifier.probabilities(crops)]
