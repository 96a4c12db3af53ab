"""Everyday photos: the set builder (MTCNN teacher + classifier + VOC objects) and its evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from inference.models.object_check import OTHER_CLASS
from inference.results import CommentResult, DetectedObject, Face
from inference.settings import DEFAULT_WEIGHTS_DIR
from inference.text.labels import EMOTION_CLASSES
from tests.fixtures.tiny_models import make_colour_classifier, make_tiny_detector
from training import evaluate_detector, evaluate_honesty, label_everyday
from training import everyday_eval as ev

VOC_NAMES = {0: "chair", 1: "car", 2: "person", 3: "dog"}


def make_voc(root: Path, photos: dict[str, tuple[Path | None, str]]) -> Path:
    """A VOC-like YOLO set: ``photos`` maps a stem to (image file or None for a grey photo, labels)."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, (source, labels) in photos.items():
            target = root / "images" / split / f"{stem}.jpg"
            if source is None:
                Image.new("RGB", (352, 264), (120, 140, 160)).save(target)
            else:
                shutil.copyfile(source, target)
            (root / "labels" / split / f"{stem}.txt").write_text(labels, encoding="utf-8")
    (root / "data.yaml").write_text(yaml.safe_dump({"names": VOC_NAMES}), encoding="utf-8")
    return root


def make_faces(root: Path) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (64, 64), (200, 170, 150)).save(root / "images" / split / "close.jpg")
        (root / "labels" / split / "close.txt").write_text("3 0.5 0.5 0.8 0.8\n", encoding="utf-8")
    return root


def test_teacher_labels_faces_keeps_objects_and_leaves_negatives_empty(
    tmp_path: Path, zidane_jpg: Path
) -> None:
    voc = make_voc(
        tmp_path / "voc",
        {
            "people": (zidane_jpg, "2 0.5 0.5 0.9 0.9\n3 0.2 0.8 0.1 0.1\n"),  # a person and a dog
            "empty": (None, "0 0.5 0.5 0.3 0.3\n"),  # a chair, nobody
        },
    )
    out = tmp_path / "everyday"
    label_everyday.main(
        [
            *("--objects", str(voc), "--faces", str(make_faces(tmp_path / "faces"))),
            *("--out", str(out), "--classifier", str(DEFAULT_WEIGHTS_DIR / "emotion" / "face_classifier.pt")),
        ]
    )
    names = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))["names"]
    assert names == ["anger", "sad", "panic", "happy", "neutral", "chair", "car", "dog"]  # no person
    people = (out / "labels" / "val" / "voc_people.txt").read_text(encoding="utf-8").split("\n")
    faces = [line for line in people if line and int(line.split()[0]) < 5]
    assert len(faces) == 2  # both faces of zidane.jpg, each with an emotion class
    assert [line.split()[0] for line in people if line and int(line.split()[0]) >= 5] == ["7"]  # the dog
    empty = (out / "labels" / "val" / "voc_empty.txt").read_text(encoding="utf-8").split()
    assert empty[0] == "5" and len(empty) == 5  # the chair only: a hard negative for faces
    assert (out / "images" / "val" / "voc_people.jpg").is_symlink()  # nothing is copied
    assert (out / "labels" / "train" / "faces_close.txt").read_text(encoding="utf-8").startswith("3 ")
    records = [json.loads(line) for line in (out / "teacher" / "val.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == ["voc_empty.jpg", "voc_people.jpg"]
    assert records[0]["faces"] == []
    # every teacher box is kept for evaluation, weak ones too; only the sure ones became labels
    assert len([face for face in records[1]["faces"] if face["prob"] >= 0.97]) == 2
    closeups = yaml.safe_load((out / "closeups.yaml").read_text(encoding="utf-8"))
    assert closeups["names"] == names


def photo_with(
    teacher: list[tuple[tuple[float, float, float, float], float]],
    objects: list[tuple[str, tuple[float, float, float, float]]],
    faces: list[Face],
    things: list[DetectedObject],
) -> ev.EverydayPhoto:
    photo = ev.EverydayPhoto(Path("x.jpg"), (300, 200), teacher, objects)
    photo.result = CommentResult("댓글", [], faces, things, "t5")
    return photo


def test_face_metrics_count_found_false_and_large_boxes() -> None:
    photos = [
        photo_with(
            teacher=[((10, 10, 50, 50), 0.99), ((100, 10, 130, 40), 0.99), ((200, 10, 210, 20), 0.99)],
            objects=[("person", (0, 0, 300, 200))],
            faces=[
                Face("happy", "기쁨", 0.9, (12, 12, 50, 52)),  # finds the first teacher face
                Face("sad", "슬픔", 0.2, (100, 10, 130, 40)),  # below the threshold
                Face("sad", "슬픔", 0.8, (150, 100, 200, 150)),  # no teacher face there: false
                Face("anger", "분노", 0.7, (0, 0, 290, 190)),  # a box over 40 % of the photo: false, large
            ],
            things=[],
        ),
        photo_with([], [("car", (0, 0, 100, 100))], [], []),
    ]
    metrics = ev.face_metrics(photos, conf=0.5)
    assert metrics["teacher_faces"] == 2  # the 10-px face is under the 24-px bar
    assert metrics["recall"] == 0.5
    assert metrics["false_faces_per_100_photos"] == 100.0  # two false faces over two photos
    assert metrics["boxes_over_40pct"] == 1
    assert metrics["boxes_over_40pct_without_such_a_face"] == 1
    assert ev.face_metrics(photos, conf=0.1)["recall"] == 1.0
    assert metrics["face_free_photos_with_a_face"] == 0  # the only face-free photo (a car) has none
    photos[1].result = CommentResult("댓글", [], [Face("sad", "슬픔", 0.3, (0, 0, 20, 20))], [], "t5")
    assert ev.face_metrics(photos, conf=0.2)["face_free_photos_with_a_face"] == 1
    assert ev.face_metrics(photos, conf=0.5)["face_free_photos_with_a_face"] == 0


def test_object_metrics_score_keywords_against_voc_labels() -> None:
    photos = [
        photo_with(
            teacher=[],
            objects=[("car", (0, 0, 150, 100)), ("dog", (0, 0, 5, 5)), ("chair", (0, 0, 100, 100))],
            faces=[],
            things=[
                DetectedObject("car", "차", 0.9, (0, 0, 150, 100)),
                DetectedObject("dog", "개", 0.6, (0, 0, 5, 5)),  # right, though too small to be wanted
                DetectedObject("bus", "버스", 0.5, (0, 0, 50, 50)),  # wrong
            ],
        )
    ]
    metrics = ev.object_metrics(photos, conf=0.4)
    assert metrics["keyword_precision"] == round(2 / 3, 4)
    assert metrics["keyword_recall_2pct"] == 0.5  # car found, chair missed; the tiny dog isn't wanted
    assert ev.object_metrics(photos, conf=0.55)["keyword_precision"] == 1.0
    table = [ev.object_metrics(photos, conf) for conf in (0.4, 0.55)]
    assert ev.pick_object_conf(table) == 0.55


def test_a_group_keyword_is_right_for_any_member_and_finds_them() -> None:
    """반려동물 (``pet``: dog or cat) is right on a cat photo and finds its cat; wrong where neither is."""
    photos = [
        photo_with(
            teacher=[],
            objects=[("cat", (0, 0, 150, 100)), ("car", (0, 0, 100, 100))],
            faces=[],
            things=[DetectedObject("pet", "반려동물", 0.1, (0, 0, 150, 100))],  # under conf: its own rule
        ),
        photo_with(
            teacher=[],
            objects=[("horse", (0, 0, 150, 100))],
            faces=[],
            things=[DetectedObject("pet", "반려동물", 0.3, (0, 0, 150, 100))],
        ),
    ]
    metrics = ev.object_metrics(photos, conf=0.4, groups={"pet": ("dog", "cat")})
    assert metrics["keyword_precision"] == 0.5 and metrics["group_keywords_predicted"] == 2
    assert metrics["keyword_recall_2pct"] == round(1 / 3, 4)  # the cat of three wanted objects
    assert metrics["keyword_recall_2pct_by_name"] == 0.0  # no keyword named a class itself
    assert ev.object_metrics(photos, conf=0.4)["keywords_predicted"] == 0  # without groups: under conf


def test_honesty_metrics_judge_photos_without_faces() -> None:
    lonely = photo_with([], [("car", (0, 0, 100, 100))], [], [])
    lonely.keywords, lonely.comment = ["차"], "차가 멋지게 담겼네요! 🚗"
    moody = photo_with([], [], [], [])
    moody.keywords, moody.comment = ["슬픔"], "슬퍼 보이는 표정이네요 😢"
    crowd = photo_with([((0, 0, 40, 40), 0.99)], [("person", (0, 0, 50, 50))], [], [])
    crowd.keywords, crowd.comment = ["기쁨"], "표정이 밝아요"
    metrics = ev.honesty_metrics([lonely, moody, crowd])
    assert metrics["photos_without_face"] == 2
    assert metrics["emotion_keyword_share"] == 0.5
    assert metrics["mood_claim_share"] == 0.5


def test_honesty_report_compares_templates_and_generators_reproducibly(
    tmp_path: Path, tiny_weights_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Object keyword sets of the val photos (and the empty set) through the templates and every
    generator; the same seed gives the same report."""
    voc = make_voc(
        tmp_path / "voc",
        {"room": (None, "0 0.5 0.5 0.5 0.5\n1 0.3 0.3 0.4 0.4\n"), "park": (None, "3 0.5 0.5 0.6 0.6\n")},
    )
    everyday = tmp_path / "everyday"
    (everyday / "teacher").mkdir(parents=True)
    (everyday / "teacher" / "val.jsonl").write_text(
        "".join(
            json.dumps({"image": f"voc_{s}.jpg", "size": [352, 264], "faces": []}) + "\n"
            for s in ("room", "park")
        ),
        encoding="utf-8",
    )
    reports = []
    for run in range(2):
        out = tmp_path / f"honesty{run}.json"
        evaluate_honesty.main(
            [
                *("--objects", str(voc), "--everyday", str(everyday), "--samples", "2"),
                *("--generators", str(tiny_weights_dir / "generators"), "--threads", "1", "--out", str(out)),
            ]
        )
        reports.append(json.loads(out.read_text(encoding="utf-8")))
    capsys.readouterr()
    report = reports[0]
    assert report == reports[1]
    assert report["prompts"] == 3  # [의자, 차], [개] and the empty set
    assert {"template", "t5", "gpt2"} <= report.keys()
    template = report["template"]
    assert template["comments"] == 6 and template["mood_claim_share"] == 0.0
    assert template["objects_named_share"] == 1.0 and template["garbled"] == 0
    assert all(report[name]["comments"] == 6 for name in ("t5", "gpt2"))
    for name in ("t5 (bot)", "gpt2 (bot)"):  # the bot's path: the two object sets, never a feeling
        assert report[name]["comments"] == 4 and report[name]["feeling_claim_share"] == 0.0
    assert template["feeling_claim_share"] == 0.0 and template["template_share"] == 1.0


@pytest.mark.parametrize("naming", [False, True], ids=["checked objects", "named objects"])
def test_evaluate_detector_reports_everyday_photos(
    tmp_path: Path, zidane_jpg: Path, tiny_weights_dir: Path, naming: bool
) -> None:
    """The whole report through the bot's pipeline, on a tiny set with a tiny joint model: with
    ``object_naming`` the object threshold it sets is the check's (a score), not the detector's."""
    voc = make_voc(tmp_path / "voc", {"people": (zidane_jpg, "2 0.5 0.5 0.9 0.9\n1 0.2 0.8 0.3 0.3\n")})
    everyday = tmp_path / "everyday"
    label_everyday.main(
        ["--objects", str(voc), "--faces", str(make_faces(tmp_path / "faces")), "--out", str(everyday)]
    )
    weights = tmp_path / "weights"
    names = yaml.safe_load((everyday / "data.yaml").read_text(encoding="utf-8"))["names"]
    make_tiny_detector(weights / "emotion" / "model.pt", names)
    if naming:
        objects = [name for name in names if name not in EMOTION_CLASSES]
        rows = [[float(i % 3 == c) * 5 for c in range(3)] for i in range(len(objects) + 1)]
        make_colour_classifier(
            weights / "emotion" / "object_check.pt", (OTHER_CLASS, *objects), rows, [0.0] * len(rows)
        )
        metadata_path = weights / "emotion" / "metadata.json"
        naming_metadata = {
            "object_check": "object_check.pt",
            "object_check_min": 0.5,
            "object_conf": 0.01,
            "object_naming": {"power": 0.5, "min_probability": 0.0, "nms_iou": 0.5},
        }
        metadata_path.write_text(
            json.dumps({**json.loads(metadata_path.read_text(encoding="utf-8")), **naming_metadata}),
            encoding="utf-8",
        )
    shutil.copytree(tiny_weights_dir / "generators", weights / "generators")
    out = tmp_path / "eval"
    evaluate_detector.main(
        [
            *("--weights", str(weights / "emotion" / "model.pt"), "--everyday", str(everyday)),
            *("--objects", str(voc), "--out", str(out), "--no-closeups", "--update-metadata", "--set-conf"),
        ]
    )
    report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["everyday"]
    assert report["photos"] == 1 and report["faces"]["teacher_faces"] == 2
    assert 0.0 <= report["faces"]["recall"] <= 1.0
    assert len(report["face_conf_grid"]) == len(ev.FACE_CONF_GRID)
    assert len(report["object_conf_grid"]) == len(ev.OBJECT_CONF_GRID)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 0
    metadata = json.loads((weights / "emotion" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["conf"] == report["conf"] and metadata["object_conf"] == report["object_conf"]
    assert metadata["everyday_metrics"]["faces"] == report["faces"]
    assert metadata["everyday_metrics"]["object_map"] == report["object_map"]
    assert set(report["object_map"]) == {"at_conf_0.001", f"at_bot_conf_{report['object_conf']:g}"}
    assert all(0.0 <= row["map50"] <= 1.0 for row in report["object_map"].values())
    if naming:  # the detector threshold stays; the score threshold is the one picked
        assert report["object_conf"] == 0.01 and report["object_check_min"] in ev.OBJECT_CONF_GRID
        assert metadata["object_check_min"] == report["object_check_min"]
    else:
        assert "object_check_min" not in report


def test_face_threshold_is_the_lowest_without_too_many_or_giant_false_faces() -> None:
    row = {"false_faces_per_100_photos": 2.0, "boxes_over_40pct_without_such_a_face": 0}
    table = [
        {**row, "conf": 0.1, "false_faces_per_100_photos": 5.0},
        {**row, "conf": 0.15, "boxes_over_40pct_without_such_a_face": 1},  # few false faces, one giant
        {**row, "conf": 0.2},
        {**row, "conf": 0.3},
    ]
    assert ev.pick_face_conf(table) == 0.2
    assert ev.pick_face_conf(table[:2]) == 0.15  # nothing qualifies: the strictest threshold measured


def test_face_threshold_avoids_faces_on_face_free_photos_where_it_can() -> None:
    row = {"false_faces_per_100_photos": 2.0, "boxes_over_40pct_without_such_a_face": 0}
    table = [
        {**row, "conf": 0.02, "face_free_photos_with_a_face": 1},
        {**row, "conf": 0.03, "face_free_photos_with_a_face": 0},
        {**row, "conf": 0.05, "face_free_photos_with_a_face": 0},
    ]
    assert ev.pick_face_conf(table) == 0.03
    worse = [{**r, "face_free_photos_with_a_face": 2} for r in table[:2]] + [table[2]]
    assert ev.pick_face_conf(worse) == 0.05
    always = [{**r, "face_free_photos_with_a_face": 1} for r in table]
    assert ev.pick_face_conf(always) == 0.02  # none reaches 0: the fewest, then the lowest threshold
