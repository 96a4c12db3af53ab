"""Face-emotion and object detection with ultralytics YOLO models.

Both detectors take a batch of ``DecodedImage`` and return typed results with boxes in the
original upload's pixels. The emotion detector reads ``metadata.json`` beside its weights for
``imgsz``/``conf`` (settings override them). When it names a ``face_check``, a face box must also
pass ``inference.models.face_classifier.FaceCheck`` (p(face) ≥ ``face_check_min``), which lets the
detector run at a threshold low enough for small faces without calling a dog's face a face; when it
names a ``classifier``, each face box that is left gets its emotion from the second-stage
``inference.models.face_classifier.FaceEmotionClassifier`` (``neutral``, no mood, where its best class
is under ``emotion_min``).

The shipped everyday detector is one joint model: its emotion classes are faces and every other
class is an object, so a single pass gives both (``EmotionDetector.detect_all``); faces and objects
keep their own confidence thresholds (``conf`` and ``object_conf`` in the metadata). When the metadata
names an ``object_check``, each object box must also pass ``inference.models.object_check.ObjectCheck``
(p(its class) ≥ ``object_check_min``), so the objects can run at a lower threshold; with
``object_naming`` the check names each box's class itself and scores it (``ObjectNaming``). With
``object_flip`` the model also sees the mirror image and each object's confidence is the mean of the
two views (``fuse_mirrored``). With ``face_flip`` a face seen in either view counts, at the
confidence of the view that sees it better (``faces_in_both_views``): the model finds some faces
turned one way far better than their mirror images. ``object_groups`` name a group
(``pet``) where the detector found one of its members but cannot tell which (``ObjectGroup``). With
``second_look``, a photo in which no face is found is searched once more at a larger size for small
faces (``SecondLook``). A separate ``ObjectDetector`` (``OBJECT_WEIGHTS``, e.g. an OIV7 model)
replaces the joint model's objects.

Call ``inference.models.runtime.prepare_offline_ultralytics()`` before importing this module.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

import torch
from PIL import Image, ImageOps
from torchvision.ops import batched_nms
from ultralytics import YOLO
from ultralytics.utils import patches as ultralytics_patches

from inference.images import DecodedImage
from inference.results import Box, DetectedObject, Face, box_area, box_intersection, box_iou
from inference.settings import Settings
from inference.text.labels import NEUTRAL_CLASS, emotion_keyword, is_known_emotion, object_keyword

logger = logging.getLogger(__name__)

# ultralytics replaces PIL.Image.open process-wide with a wrapper that, on the first file Pillow
# cannot identify, runs check_requirements("pi-heif") (a pip install from the network) and retries.
# Every non-image upload would trigger that. HEIC is already handled by pillow-heif
# (inference.images), so mark ultralytics' lazy plugin as done and keep Pillow's plain behaviour.
ultralytics_patches._pil_plugins_registered = True

METADATA_FILENAME = "metadata.json"
DEFAULT_EMOTION_IMGSZ = 640
DEFAULT_EMOTION_CONF = 0.25
DEFAULT_OBJECT_CONF = 0.35
DEFAULT_MAX_DET = 20  # more faces than this in one photo add nothing to a 4-keyword comment
_CROP_MARGIN = 0.1  # the classifier sees a little context around the face, like its training crops


@dataclass(frozen=True, slots=True)
class SecondLook:
    """One more pass over a photo in which the detector found no face, at a larger ``imgsz``, for
    faces too small to show at the shipped size (``second_look`` in the metadata). Its faces must
    clear ``conf`` and a stricter face check (``face_check_min``): a larger view of a faceless photo
    is where patterned cloth and paws start to look like faces."""

    imgsz: int
    conf: float
    face_check_min: float

    @classmethod
    def from_metadata(cls, value: object) -> SecondLook | None:
        if not isinstance(value, dict):
            return None
        return cls(int(value["imgsz"]), float(value["conf"]), float(value["face_check_min"]))


@dataclass(frozen=True, slots=True)
class ObjectGroup:
    """One keyword for classes the detector mixes up (``pet``: a dog or a cat, ``object_groups`` in the
    metadata). Where no member is named by itself, a member box over ``conf`` whose object check gives
    the members together at least ``check_min`` names the group: "a pet" where "a dog" would be a coin
    toss between dog and cat."""

    label: str
    members: tuple[str, ...]
    conf: float
    check_min: float

    @classmethod
    def all_from_metadata(cls, value: object) -> tuple[ObjectGroup, ...]:
        if not isinstance(value, list):
            return ()
        return tuple(
            cls(str(g["label"]), tuple(str(m) for m in g["members"]), float(g["conf"]), float(g["check_min"]))
            for g in value
        )


@dataclass(frozen=True, slots=True)
class ObjectNaming:
    """The object check names what each object box shows (``object_naming`` in the metadata): the
    detector proposes boxes, the check classifies them, as in a two-stage detector. A box gives one
    object for each class the check gives at least ``min_probability``, scored
    ``detector confidence ** power × p(class)``; an object stays when its score reaches the check's
    threshold, and of two objects of one class overlapping by ``nms_iou`` or more the better one stays.
    The detector's own class is then only a proposal: a dog box the check sees as a cat names a cat."""

    power: float
    min_probability: float
    nms_iou: float

    @classmethod
    def from_metadata(cls, value: object) -> ObjectNaming | None:
        if not isinstance(value, dict):
            return None
        return cls(float(value["power"]), float(value["min_probability"]), float(value["nms_iou"]))


class PassOptions(TypedDict):
    """How ``EmotionDetector`` uses its model beyond one plain pass (metadata keys of the same names)."""

    object_flip: bool
    face_flip: bool
    second_look: SecondLook | None
    emotion_min: float
    object_groups: tuple[ObjectGroup, ...]
    object_naming: ObjectNaming | None


def pass_options(metadata: dict[str, Any]) -> PassOptions:
    return PassOptions(
        object_flip=bool(metadata.get("object_flip", False)),
        face_flip=bool(metadata.get("face_flip", False)),
        second_look=SecondLook.from_metadata(metadata.get("second_look")),
        emotion_min=float(metadata.get("emotion_min", 0.0)),
        object_groups=ObjectGroup.all_from_metadata(metadata.get("object_groups")),
        object_naming=ObjectNaming.from_metadata(metadata.get("object_naming")),
    )


@dataclass(frozen=True, slots=True)
class RawBox:
    """One detection in working-image pixels, before it is typed and mapped back."""

    label: str
    confidence: float
    box: Box


class FaceClassifier(Protocol):
    """What the optional second stage (``inference.models.face_classifier``) provides."""

    def classify(self, crops: list[Image.Image]) -> list[tuple[str, float]]: ...


class FaceChecker(Protocol):
    """What the optional face check (``inference.models.face_classifier.FaceCheck``) provides."""

    def crop(self, image: Image.Image, box: Box) -> Image.Image: ...

    def is_face(self, crops: Sequence[Image.Image]) -> list[bool]: ...

    def face_probability(self, crops: Sequence[Image.Image]) -> list[float]: ...


class ObjectChecker(Protocol):
    """What the optional object check (``inference.models.object_check.ObjectCheck``) provides."""

    threshold: float

    def crop(self, image: Image.Image, box: Box) -> Image.Image: ...

    def keeps(self, crops: Sequence[Image.Image], labels: Sequence[str]) -> list[bool]: ...

    def object_probabilities(self, crops: Sequence[Image.Image]) -> list[dict[str, float]]: ...

    def group_probability(self, crops: Sequence[Image.Image], members: Sequence[str]) -> list[float]: ...


def resolve_weights(settings: Settings, value: str) -> str:
    """A local weights file if it exists; a bare model name (``yolov10n.pt``) is passed to ultralytics
    unchanged so that it downloads it for users with internet access."""
    path = settings.weights_path(value)
    if path.is_file():
        return str(path)
    if "/" not in value and "\\" not in value and not Path(value).is_absolute():
        logger.warning("weights %s not found locally; letting ultralytics fetch %r", path, value)
        return value
    raise FileNotFoundError(f"detector weights not found: {path}")


def read_metadata(weights_file: str) -> dict[str, Any]:
    """``metadata.json`` beside the weights (empty when absent or unreadable)."""
    path = Path(weights_file).parent / METADATA_FILENAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


class YoloRunner:
    """One ultralytics model with fixed predict arguments; batched predict → ``RawBox`` lists."""

    def __init__(self, weights: str, device: str, imgsz: int, conf: float, max_det: int) -> None:
        self.weights = weights
        self.model = YOLO(weights)
        self.device = device
        self.imgsz = imgsz
        self.conf = conf
        self.max_det = max_det
        self.half = device.startswith("cuda")
        self.batched = device != "cpu"
        # ultralytics' first predict runs select_device, which clamps torch to cpus-1 threads (1 on 2
        # cores, ~2x slower); remember the count chosen by the pipeline and restore it after predicting.
        self.threads = torch.get_num_threads()
        self.names: dict[int, str] = dict(self.model.names)
        logger.info(
            "loaded %s (%d classes: %s) imgsz=%d conf=%.2f on %s",
            weights,
            len(self.names),
            ", ".join(self.names.values()),
            imgsz,
            conf,
            device,
        )

    def predict(
        self, images: Sequence[Image.Image], imgsz: int | None = None, conf: float | None = None
    ) -> list[list[RawBox]]:
        """Boxes per image, at the runner's ``imgsz`` and ``conf`` unless given. One batched call on
        GPU; on CPU one call per image, because there a batch is no faster per image (the cores are
        busy either way) and mixed photo shapes force square 640×640 letterboxing instead of each
        photo's smaller rectangle (measured: 150 vs 174 ms/img for mixed shapes, 86 vs 140 ms/img for
        same shapes, yolov10n, 2 cores)."""
        if not images:
            return []
        if self.batched:
            return [self._raw_boxes(result) for result in self._predict(list(images), imgsz, conf)]
        return [self._raw_boxes(self._predict([image], imgsz, conf)[0]) for image in images]

    def predict_with_mirror(
        self, images: Sequence[Image.Image]
    ) -> tuple[list[list[RawBox]], list[list[RawBox]]]:
        """Boxes per image and per mirror image (in the mirror's pixels). A photo and its mirror share
        their shape, so on CPU they go as one batch of two: 31–32 ms against 38 ms for two calls and
        19–21 ms for the photo alone (60 VOC photos, imgsz 352, 2 threads)."""
        if not images:
            return [], []
        mirrors = [ImageOps.mirror(image) for image in images]
        if self.batched:
            results = [self._raw_boxes(result) for result in self._predict([*images, *mirrors])]
            return results[: len(images)], results[len(images) :]
        pairs = [
            [self._raw_boxes(result) for result in self._predict([i, m])]
            for i, m in zip(images, mirrors, strict=True)
        ]
        return [pair[0] for pair in pairs], [pair[1] for pair in pairs]

    def _predict(
        self, images: list[Image.Image], imgsz: int | None = None, conf: float | None = None
    ) -> list[Any]:
        results = self.model.predict(
            images,
            imgsz=imgsz or self.imgsz,
            conf=self.conf if conf is None else conf,
            max_det=self.max_det,
            device=self.device,
            half=self.half,
            verbose=False,
        )
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return list(results)

    def _raw_boxes(self, result: Any) -> list[RawBox]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.float().cpu().tolist()
        confs = boxes.conf.float().cpu().tolist()
        classes = boxes.cls.int().cpu().tolist()
        return [
            RawBox(label=self.names.get(cls, str(cls)), confidence=conf, box=(box[0], box[1], box[2], box[3]))
            for box, conf, cls in zip(xyxy, confs, classes, strict=True)
        ]


FACE_DUPLICATE_IOU = 0.6
GROUP_CANDIDATES = 5  # the most confident member boxes a group's check looks at
MIRROR_SAME_OBJECT_IOU = 0.5
FACE_NESTED_SHARE = 0.85  # a box lying this much inside a larger one is the same face (face vs head box)


def _nested_share(a: Box, b: Box) -> float:
    """How much of the smaller box lies inside the other (1.0: fully inside)."""
    smaller = min(box_area(a), box_area(b))
    return box_intersection(a, b) / smaller if smaller > 0 else 0.0


def _same_face(a: Box, b: Box, iou: float) -> bool:
    return box_iou(a, b) > iou or _nested_share(a, b) > FACE_NESTED_SHARE


def one_box_per_face(boxes: list[RawBox], iou: float = FACE_DUPLICATE_IOU) -> list[RawBox]:
    """Keep the most confident of boxes that are the same face, whatever their class.

    YOLOv10's NMS-free head can return the same face twice with two emotions, as two boxes that
    overlap by more than ``iou`` or as a face box inside a head-sized box (both measured on the
    shipped model); a face has one emotion, so the weaker duplicate would only add a wrong keyword.
    """
    kept: list[RawBox] = []
    for box in sorted(boxes, key=lambda b: b.confidence, reverse=True):
        if not any(_same_face(box.box, other.box, iou) for other in kept):
            kept.append(box)
    return kept


def one_object_per_class(boxes: list[RawBox], iou: float) -> list[RawBox]:
    """Class-wise non-maximum suppression: of boxes of one class overlapping by ``iou`` or more only the
    best scored stays; the result is sorted best first."""
    if not boxes:
        return []
    classes = {label: i for i, label in enumerate(dict.fromkeys(b.label for b in boxes))}
    keep = batched_nms(
        torch.tensor([b.box for b in boxes], dtype=torch.float32),
        torch.tensor([b.confidence for b in boxes], dtype=torch.float32),
        torch.tensor([classes[b.label] for b in boxes]),
        iou,
    )
    return [boxes[i] for i in keep.tolist()]


def faces_over(boxes: Sequence[RawBox], conf: float) -> list[RawBox]:
    """The face boxes (emotion classes) at ``conf`` or above, one per face."""
    return one_box_per_face([b for b in boxes if is_known_emotion(b.label) and b.confidence >= conf])


def faces_in_both_views(
    photo: Sequence[RawBox], mirror: Sequence[RawBox], width: float, conf: float
) -> list[RawBox]:
    """The faces at ``conf`` or above in the photo or (mapped back) in its mirror image, one per face:
    where both views see a face, the more confident view's box and emotion stay. With no mirror boxes
    (``face_flip`` off) these are the photo's own faces, ``faces_over``."""
    return faces_over([*photo, *mirrored(mirror, width)], conf)


def mirrored(boxes: Sequence[RawBox], width: float) -> list[RawBox]:
    """Boxes found in the mirror image, in the photo's own pixels."""
    return [
        RawBox(b.label, b.confidence, (width - b.box[2], b.box[1], width - b.box[0], b.box[3])) for b in boxes
    ]


def fuse_mirrored(
    photo: Sequence[RawBox], mirror: Sequence[RawBox], iou: float = MIRROR_SAME_OBJECT_IOU
) -> list[RawBox]:
    """One box per object seen in the photo and (mapped back) in its mirror image.

    Two boxes of one class that overlap by ``iou`` (most confident first, one to one) are the same
    object: its confidence is the mean of both, its box their confidence-weighted mean. A box that
    only one view has counts the other view as 0, so it keeps half its confidence. A detector
    trained on a few thousand photos is unsure in ways that differ between the views; the mean
    ranks objects better (on the VOC val photos: keyword recall 0.178 → 0.208 at precision 0.85
    for the detector alone).
    """
    fused: list[RawBox] = []
    unmatched = sorted(mirror, key=lambda b: b.confidence, reverse=True)
    for box in sorted(photo, key=lambda b: b.confidence, reverse=True):
        same = [m for m in unmatched if m.label == box.label and box_iou(m.box, box.box) >= iou]
        if not same:
            fused.append(RawBox(box.label, box.confidence / 2, box.box))
            continue
        match = same[0]
        unmatched.remove(match)
        total = box.confidence + match.confidence
        corners = zip(box.box, match.box, strict=True)
        merged = tuple((a * box.confidence + b * match.confidence) / total for a, b in corners)
        fused.append(RawBox(box.label, total / 2, (merged[0], merged[1], merged[2], merged[3])))
    fused += [RawBox(m.label, m.confidence / 2, m.box) for m in unmatched]
    return sorted(fused, key=lambda b: b.confidence, reverse=True)


class EmotionDetector:
    """Faces with their emotion; ``detect`` returns one ``list[Face]`` per image."""

    def __init__(
        self,
        runner: YoloRunner,
        classifier: FaceClassifier | None = None,
        object_conf: float | None = None,
        face_check: FaceChecker | None = None,
        object_check: ObjectChecker | None = None,
        object_flip: bool = False,
        face_flip: bool = False,
        second_look: SecondLook | None = None,
        emotion_min: float = 0.0,
        object_groups: Sequence[ObjectGroup] = (),
        object_naming: ObjectNaming | None = None,
    ) -> None:
        self.runner = runner
        self.classifier = classifier
        self.face_check = face_check
        self.object_check = object_check
        self.object_flip = object_flip
        self.face_flip = face_flip
        # Only behind a face check (the larger pass runs at a threshold no detector alone could use), and
        # only when it is larger than the first pass (EMOTION_IMGSZ may have raised that one).
        looks_closer = second_look is not None and second_look.imgsz > runner.imgsz
        self.second_look = second_look if face_check is not None and looks_closer else None
        self.emotion_min = emotion_min
        self.object_groups = tuple(object_groups) if object_check is not None else ()  # the check judges them
        self.object_naming = object_naming if object_check is not None else None
        if self.object_naming is not None and object_check is not None:
            logger.info(
                "object naming: the check names each box's classes, score conf^%.2f x p >= %.3f",
                self.object_naming.power,
                object_check.threshold,
            )
        # Faces keep the runner's conf; objects of a joint model theirs (None: the runner's too).
        self.face_conf = runner.conf
        has_objects = bool(self.object_names)
        self.object_conf = object_conf if object_conf is not None and has_objects else runner.conf
        runner.conf = min(self.face_conf, self.object_conf)

    @classmethod
    def from_settings(cls, settings: Settings, device: str) -> EmotionDetector:
        weights = resolve_weights(settings, settings.emotion_weights)
        metadata = read_metadata(weights)
        runner = YoloRunner(
            weights,
            device,
            imgsz=settings.emotion_imgsz or int(metadata.get("imgsz", DEFAULT_EMOTION_IMGSZ)),
            conf=_first_not_none(settings.emotion_conf, metadata.get("conf"), DEFAULT_EMOTION_CONF),
            max_det=int(metadata.get("max_det", DEFAULT_MAX_DET)),
        )
        classifier = _load_classifier(weights, metadata.get("classifier"), device)
        face_check = _load_face_check(
            weights, metadata.get("face_check"), metadata.get("face_check_min"), device
        )
        object_check = _load_object_check(
            weights, metadata.get("object_check"), metadata.get("object_check_min"), device
        )
        object_conf = _first_not_none(settings.object_conf, metadata.get("object_conf"), DEFAULT_OBJECT_CONF)
        return cls(runner, classifier, object_conf, face_check, object_check, **pass_options(metadata))

    @property
    def names(self) -> list[str]:
        return list(self.runner.names.values())

    @property
    def object_names(self) -> list[str]:
        """Classes that are not emotions: a joint everyday model's objects (empty for a faces-only model)."""
        return [name for name in self.names if not is_known_emotion(name)]

    def detect(self, images: Sequence[DecodedImage]) -> list[list[Face]]:
        return [faces for faces, _ in self.detect_all(images)]

    def detect_all(self, images: Sequence[DecodedImage]) -> list[tuple[list[Face], list[DetectedObject]]]:
        """Faces and (for a joint model) objects of each image, from one pass of the model (with
        ``object_flip`` or ``face_flip``, one pass over each photo and its mirror image)."""
        photos = [item.image for item in images]
        object_flip = self.object_flip and bool(self.object_names)
        predicted, mirror = (
            self.runner.predict_with_mirror(photos)
            if object_flip or self.face_flip
            else (self.runner.predict(photos), None)
        )
        faces_raw = self._faces(photos, predicted, mirror if self.face_flip else None)
        if self.face_check is not None:
            faces_raw = [
                self._checked(item.image, boxes) for item, boxes in zip(images, faces_raw, strict=True)
            ]
        faces_raw = self._looked_again(photos, faces_raw)
        if self.classifier is not None:
            faces_raw = [
                self._relabel(item.image, boxes) for item, boxes in zip(images, faces_raw, strict=True)
            ]
        results = []
        for item, faces, boxes in zip(
            images,
            faces_raw,
            self._object_boxes(images, predicted, mirror if object_flip else None),
            strict=True,
        ):
            things = [b for b in boxes if b.confidence >= self.object_conf]
            things = self._checked_objects(item.image, things)
            things += self._groups(item.image, boxes, named={b.label for b in things})
            results.append((_faces(item, faces), _objects(item, things)))
        return results

    def _faces(
        self, photos: list[Image.Image], predicted: list[list[RawBox]], mirror: list[list[RawBox]] | None
    ) -> list[list[RawBox]]:
        """The face boxes over the face threshold in each photo (and its mirror image when given)."""
        mirror = mirror if mirror is not None else [[] for _ in predicted]
        return [
            faces_in_both_views(boxes, flipped, photo.width, self.face_conf)
            for photo, boxes, flipped in zip(photos, predicted, mirror, strict=True)
        ]

    @staticmethod
    def _object_boxes(
        images: Sequence[DecodedImage], predicted: list[list[RawBox]], mirror: list[list[RawBox]] | None
    ) -> list[list[RawBox]]:
        """The object boxes of each image: the photo's own, or fused with its mirror image's."""
        objects = [[b for b in boxes if not is_known_emotion(b.label)] for boxes in predicted]
        if mirror is None:
            return objects
        return [
            fuse_mirrored(
                boxes, mirrored([b for b in flipped if not is_known_emotion(b.label)], item.image.width)
            )
            for item, boxes, flipped in zip(images, objects, mirror, strict=True)
        ]

    def _checked(
        self, image: Image.Image, boxes: list[RawBox], face_min: float | None = None
    ) -> list[RawBox]:
        """Only the boxes the face check calls faces (p(face) ≥ ``face_min`` when given). It runs after
        the de-duplication, so a rejected box never frees a weaker duplicate of itself, and a threshold
        sweep over the kept boxes equals running at that threshold."""
        if not boxes or self.face_check is None:
            return boxes
        crops = [self.face_check.crop(image, box.box) for box in boxes]
        if face_min is None:
            verdicts = self.face_check.is_face(crops)
        else:
            verdicts = [p >= face_min for p in self.face_check.face_probability(crops)]
        return [box for box, is_face in zip(boxes, verdicts, strict=True) if is_face]

    def _looked_again(self, photos: list[Image.Image], faces_raw: list[list[RawBox]]) -> list[list[RawBox]]:
        """``second_look``: the photos with no face yet, once more at the larger size (faces only)."""
        look = self.second_look
        empty = [i for i, faces in enumerate(faces_raw) if not faces]
        if look is None or not empty:
            return faces_raw
        found = self.runner.predict([photos[i] for i in empty], imgsz=look.imgsz, conf=look.conf)
        faces_raw = list(faces_raw)
        for i, boxes in zip(empty, found, strict=True):
            faces_raw[i] = self._checked(photos[i], faces_over(boxes, look.conf), look.face_check_min)
        return faces_raw

    def _checked_objects(self, image: Image.Image, boxes: list[RawBox]) -> list[RawBox]:
        """Only the object boxes whose class the object check confirms (all of them without a check), or
        with ``object_naming`` the objects the check names in them."""
        if not boxes or self.object_check is None:
            return boxes
        crops = [self.object_check.crop(image, box.box) for box in boxes]
        if self.object_naming is not None:
            return self._named_objects(boxes, self.object_check.object_probabilities(crops))
        verdicts = self.object_check.keeps(crops, [box.label for box in boxes])
        return [box for box, kept in zip(boxes, verdicts, strict=True) if kept]

    def _named_objects(self, boxes: list[RawBox], probabilities: list[dict[str, float]]) -> list[RawBox]:
        """``object_naming``: the objects the check names in the detector's boxes, best first."""
        naming, check = self.object_naming, self.object_check
        assert naming is not None and check is not None
        named = [
            RawBox(name, box.confidence**naming.power * p, box.box)
            for box, row in zip(boxes, probabilities, strict=True)
            for name, p in row.items()
            if p >= naming.min_probability
        ]
        named = [thing for thing in named if thing.confidence >= check.threshold]
        return one_object_per_class(named, naming.nms_iou)

    def _groups(self, image: Image.Image, boxes: list[RawBox], named: set[str]) -> list[RawBox]:
        """``object_groups``: a group's box (its label, the member box) for each group none of whose
        members is named yet, where one of the most confident member boxes passes the group's check."""
        check = self.object_check
        found: list[RawBox] = []
        if check is None:
            return found
        for group in self.object_groups:
            if named & set(group.members):
                continue
            members = [b for b in boxes if b.label in group.members and b.confidence >= group.conf]
            candidates = sorted(members, key=lambda b: b.confidence, reverse=True)[:GROUP_CANDIDATES]
            crops = [check.crop(image, b.box) for b in candidates]
            probabilities = check.group_probability(crops, group.members)
            chosen = next(
                (b for b, p in zip(candidates, probabilities, strict=True) if p >= group.check_min), None
            )
            if chosen is not None:
                found.append(RawBox(group.label, chosen.confidence, chosen.box))
        return found

    def _relabel(self, image: Image.Image, boxes: list[RawBox]) -> list[RawBox]:
        """Second stage: the classifier's emotion replaces the detector's for each face crop."""
        if not boxes or self.classifier is None:
            return boxes
        # The classifier's own crop (its training margin) when it has one, else a 10 % margin.
        crop = getattr(self.classifier, "crop", None)
        crops = [
            crop(image, box.box) if callable(crop) else image.crop(_with_margin(box.box, image.size))
            for box in boxes
        ]
        labels = self.classifier.classify(crops)
        # The label is the classifier's, or neutral where its best class is under ``emotion_min``: a
        # barely-read face (a five-way guess at 0.29) gets no mood rather than a made-up "sad". The
        # confidence stays the detector's: how sure it is that this is a face at all (what thresholds,
        # the strongest-face order and the evaluation compare).
        return [
            RawBox(
                label=label if p >= self.emotion_min else NEUTRAL_CLASS,
                confidence=box.confidence,
                box=box.box,
            )
            for box, (label, p) in zip(boxes, labels, strict=True)
        ]


class ObjectDetector:
    """Any ultralytics detector (e.g. ``yolov8x-oiv7.pt``); labels mapped to Korean keywords."""

    def __init__(self, runner: YoloRunner) -> None:
        self.runner = runner

    @classmethod
    def from_settings(cls, settings: Settings, device: str) -> ObjectDetector | None:
        if not settings.object_weights:
            return None
        weights = resolve_weights(settings, settings.object_weights)
        return cls(
            YoloRunner(
                weights,
                device,
                imgsz=settings.object_imgsz,
                conf=_first_not_none(settings.object_conf, DEFAULT_OBJECT_CONF),
                max_det=DEFAULT_MAX_DET,
            )
        )

    def detect(self, images: Sequence[DecodedImage]) -> list[list[DetectedObject]]:
        raw = self.runner.predict([item.image for item in images])
        return [_objects(item, boxes) for item, boxes in zip(images, raw, strict=True)]


def _faces(item: DecodedImage, boxes: Sequence[RawBox]) -> list[Face]:
    return [Face(b.label, emotion_keyword(b.label), b.confidence, item.to_original(b.box)) for b in boxes]


def _objects(item: DecodedImage, boxes: Sequence[RawBox]) -> list[DetectedObject]:
    return [
        DetectedObject(b.label, object_keyword(b.label), b.confidence, item.to_original(b.box)) for b in boxes
    ]


def _load_classifier(weights: str, filename: object, device: str) -> FaceClassifier | None:
    if not filename:
        return None
    # Imported by name, and only here: the second stage is optional and ships with its weights.
    module = importlib.import_module("inference.models.face_classifier")
    path = Path(weights).parent / str(filename)
    logger.info("loading second-stage face classifier %s", path)
    classifier: FaceClassifier = module.FaceEmotionClassifier.load(path, device)
    return classifier


def _load_face_check(weights: str, filename: object, threshold: object, device: str) -> FaceChecker | None:
    face_check: FaceChecker | None = _load_check(
        "inference.models.face_classifier", "FaceCheck", weights, filename, threshold, device
    )
    return face_check


def _load_object_check(
    weights: str, filename: object, threshold: object, device: str
) -> ObjectChecker | None:
    object_check: ObjectChecker | None = _load_check(
        "inference.models.object_check", "ObjectCheck", weights, filename, threshold, device
    )
    return object_check


def _load_check(
    module_name: str, class_name: str, weights: str, filename: object, threshold: object, device: str
) -> Any:
    """A check named in the metadata (``filename`` beside the weights), at the metadata's threshold when it
    gives one, else at the checkpoint's own; None when the metadata names none."""
    if not filename:
        return None
    # Imported by name, and only here: a check is optional and ships with its weights.
    check_class = getattr(importlib.import_module(module_name), class_name)
    path = Path(weights).parent / str(filename)
    logger.info("loading %s %s", class_name, path)
    chosen = None if threshold is None else float(threshold)  # type: ignore[arg-type]
    return check_class.load(path, device, chosen)


def _with_margin(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * _CROP_MARGIN, (y2 - y1) * _CROP_MARGIN
    left, top = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
    right, bottom = min(size[0], int(x2 + pad_x + 1)), min(size[1], int(y2 + pad_y + 1))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def _first_not_none(*values: object) -> float:
    for value in values:
        if value is not None:
            return float(value)  # type: ignore[arg-type]
    raise ValueError("no value")
