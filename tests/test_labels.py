"""Korean label maps and keyword building."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from inference.results import DetectedObject, Face
from inference.text import labels
from inference.text.keywords import build_keywords, format_keywords, has_emotion, parse_keywords
from tests.conftest import ultralytics_asset

ULTRALYTICS_DATASETS = ultralytics_asset("bus.jpg").parents[1] / "cfg" / "datasets"
SHARED_OIV7 = Path(__file__).resolve().parents[2] / "shared" / "data" / "oiv7_labels_ko.json"
PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "comments" / "pairs.jsonl"
DATA_DIR = Path(labels.__file__).parents[1] / "data"  # inference/data
HANGUL_NAME = re.compile(r"^[\uac00-\ud7a30-9 ]+$")


def ultralytics_names(dataset: str) -> list[str]:
    names = yaml.safe_load((ULTRALYTICS_DATASETS / dataset).read_text(encoding="utf-8"))["names"]
    return [names[i] for i in sorted(names)]


def shipped_map(filename: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((DATA_DIR / filename).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(
    ("filename", "dataset", "count"),
    [("oiv7_ko.json", "open-images-v7.yaml", 601), ("coco_ko.json", "coco.yaml", 80)],
)
def test_label_map_covers_every_class_of_the_dataset(filename: str, dataset: str, count: int) -> None:
    names = ultralytics_names(dataset)
    mapping = shipped_map(filename)
    assert len(names) == count
    assert set(mapping) == set(names)
    for english, korean in mapping.items():
        assert HANGUL_NAME.match(korean), f"{english}: {korean!r} is not a clean Korean name"
    for name in names:
        assert labels.korean_object_name(name) == mapping[name]


@pytest.mark.parametrize(
    ("english", "korean"),
    [
        ("Bat (Animal)", "박쥐"),  # no "(동물)" in a keyword
        ("Harbor seal", "물범"),  # was "하프 조개" (harp clam)
        ("Glasses", "안경"),  # eyeglasses, not drinking glasses
        ("Tank", "탱크"),
        ("Mouse", "쥐"),  # the animal in Open Images …
        ("mouse", "마우스"),  # … the computer mouse in COCO
        ("Turkey", "칠면조"),  # the bird, not the country
        ("Tap", "수도꼭지"),
        ("Falcon", "매"),  # had stray Arabic letters
        ("Fireplace", "벽난로"),  # was a whole English sentence
        ("Winter melon", "동아"),  # was 청경채 (bok choy)
        ("Car", "차"),  # as in the comment training data
        ("Tree", "나무"),
        ("Jacket", "재킷"),
    ],
)
def test_reviewed_translations(english: str, korean: str) -> None:
    assert labels.korean_object_name(english) == korean


def test_oiv7_map_keeps_the_research_names_where_they_are_right() -> None:
    """The generators were trained on the research names: most must be unchanged."""
    if not SHARED_OIV7.is_file():
        pytest.skip("shared data not present")
    research = json.loads(SHARED_OIV7.read_text(encoding="utf-8"))
    names = ultralytics_names("open-images-v7.yaml")
    mapping = shipped_map("oiv7_ko.json")
    same = sum(research[str(i)].strip() == mapping[name] for i, name in enumerate(names))
    assert 450 <= same < 601  # reviewed: a minority fixed, the rest matched


def test_frequent_training_keywords_are_produced_unchanged() -> None:
    """Every object keyword used 20+ times in the comment data is still what the map produces."""
    if not PAIRS.is_file():
        pytest.skip("shared data not present")
    counts: dict[str, int] = {}
    for line in PAIRS.read_text(encoding="utf-8").splitlines():
        for keyword in parse_keywords(json.loads(line)["keywords"]):
            counts[keyword] = counts.get(keyword, 0) + 1
    produced = set(shipped_map("oiv7_ko.json").values())
    frequent = {k for k, n in counts.items() if n >= 20 and k not in labels.EMOTION_KEYWORDS}
    assert frequent - produced == set()


def test_generic_labels_are_excluded() -> None:
    for english in (
        "Human face",
        "Clothing",
        "Man",
        "Woman",
        "Boy",
        "Girl",
        "Person",
        "person",
        "Human head",
    ):
        assert labels.korean_object_name(english) is not None
        assert labels.object_keyword(english) is None, english
    assert labels.object_keyword("Human beard") == "수염"
    assert {"인간의 얼굴", "의류", "남자", "여자", "소년", "소녀"} <= labels.EXCLUDED_OBJECT_KEYWORDS


def test_unknown_object_name_gives_no_keyword_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="inference.text.labels"):
        assert labels.object_keyword("Flux capacitor") is None
        assert labels.object_keyword("Flux capacitor") is None
    assert sum("Flux capacitor" in r.getMessage() for r in caplog.records) == 1


def test_object_names_match_case_insensitively() -> None:
    assert labels.object_keyword("GLASSES") == "안경"
    assert labels.object_keyword(" tree ") == "나무"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["anger", "sad", "panic", "happy"], ["분노", "슬픔", "공포", "기쁨"]),
        (["anger", "sad", "panic", "happy", "neutral"], ["분노", "슬픔", "공포", "기쁨", None]),
        (["Angry", "Sadness", "Fear", "Happiness", "Surprise"], ["분노", "슬픔", "공포", "기쁨", "공포"]),
        (["분노", "슬픔", "공포", "기쁨", "당황", "중립"], ["분노", "슬픔", "공포", "기쁨", "공포", None]),
    ],
)
def test_emotion_names_map_to_korean_keywords(names: list[str], expected: list[str | None]) -> None:
    assert [labels.emotion_keyword(name) for name in names] == expected
    assert all(labels.is_known_emotion(name) for name in names)


def test_unknown_emotion_name_has_no_keyword() -> None:
    assert labels.emotion_keyword("contempt") is None
    assert not labels.is_known_emotion("contempt")


def face(label: str, confidence: float, size: float = 10.0) -> Face:
    return Face(label, labels.emotion_keyword(label), confidence, (0.0, 0.0, size, size))


def thing(label: str, confidence: float) -> DetectedObject:
    return DetectedObject(label, labels.object_keyword(label), confidence, (0.0, 0.0, 1.0, 1.0))


def test_keywords_put_emotions_first_then_objects_by_confidence() -> None:
    faces = [face("sad", 0.4), face("happy", 0.9), face("happy", 0.8), face("neutral", 0.95)]
    objects = [thing("Tree", 0.5), thing("Glasses", 0.7), thing("Human face", 0.99), thing("Tree", 0.6)]
    keywords = build_keywords(faces, objects, max_keywords=4)
    assert keywords == ["기쁨", "슬픔", "안경", "나무"]
    assert format_keywords(keywords) == "기쁨, 슬픔, 안경, 나무"


def test_keywords_are_capped() -> None:
    objects = [thing(name, 0.9 - i / 10) for i, name in enumerate(["Tree", "Glasses", "Car", "Book", "Cat"])]
    assert build_keywords([face("angry", 0.5)], objects, max_keywords=3) == ["분노", "나무", "안경"]


def test_equal_confidence_faces_prefer_the_larger_one() -> None:
    faces = [face("sad", 0.5, size=10), face("happy", 0.5, size=50)]
    assert build_keywords(faces, [], max_keywords=4) == ["기쁨", "슬픔"]


def test_no_face_emotion_means_no_emotion_keyword() -> None:
    assert build_keywords([], [], max_keywords=4) == []
    only_generic = [thing("Man", 0.9), thing("Clothing", 0.8)]
    assert build_keywords([face("neutral", 0.9)], only_generic, max_keywords=4) == []
    objects_only = build_keywords([], [thing("Tree", 0.9), thing("Car", 0.8)], max_keywords=4)
    assert objects_only == ["나무", "차"]
    assert not has_emotion(objects_only)
    assert has_emotion(build_keywords([face("happy", 0.5)], [], max_keywords=4))


def test_voc_classes_have_research_keywords() -> None:
    voc = ["chair", "car", "bicycle", "cat", "dog", "pottedplant", "sofa", "bus", "bottle", "diningtable"]
    assert [labels.object_keyword(name) for name in voc] == [
        *("의자", "차", "자전거", "고양이", "개", "화분", "소파", "버스", "병", "테이블"),
    ]
    assert labels.object_keyword("person") is None  # a person never becomes a keyword


def test_parse_keywords_inverts_format() -> None:
    assert parse_keywords("기쁨, 안경,나무") == ["기쁨", "안경", "나무"]
    assert parse_keywords(format_keywords(["슬픔", "차"])) == ["슬픔", "차"]
