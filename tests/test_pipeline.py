"""The whole pipeline with tiny random models (and once with the shipped weights when present)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from inference.errors import (
    EmptyImageError,
    InferenceFailedError,
    JobTimeoutError,
    NotAnImageError,
    TruncatedImageError,
    UnknownGeneratorError,
)
from inference.images import decode_image
from inference.models.detect import (
    EmotionDetector,
    ObjectGroup,
    ObjectNaming,
    RawBox,
    SecondLook,
    pass_options,
    resolve_weights,
)
from inference.models.pipeline import Pipeline, PipelineRequest
from inference.results import CommentResult
from inference.settings import DEFAULT_WEIGHTS_DIR
from inference.text.keywords import build_keywords, format_keywords, parse_keywords
from inference.text.labels import object_keyword
from inference.text.templates import claims_mood, reads_feeling
from tests.conftest import make_settings
from tests.fixtures import images as corpus
from tests.fixtures.tiny_models import make_tiny_detector

STAGES = {"decode", "emotion", "objects", "generate", "total", "batch"}


def has_hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


@pytest.fixture(scope="module")
def pipeline(tiny_weights_dir: Path) -> Pipeline:
    loaded = Pipeline.from_settings(make_settings(tiny_weights_dir))
    loaded.warmup()
    return loaded


def run_one(pipeline: Pipeline, data: bytes, **kwargs: object) -> CommentResult:
    (result,) = pipeline.run_batch([PipelineRequest(data, **kwargs)])  # type: ignore[arg-type]
    assert isinstance(result, CommentResult), result
    return result


def assert_inside(result: CommentResult) -> None:
    width, height = result.image_size
    boxes = [face.box for face in result.faces] + [obj.box for obj in result.objects]
    for x1, y1, x2, y2 in boxes:
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, (x1, y1, x2, y2)


@pytest.mark.parametrize("photo", ["bus_jpg", "zidane_jpg"])
def test_photo_in_korean_comment_out(photo: str, pipeline: Pipeline, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(photo)
    result = run_one(pipeline, path.read_bytes())
    assert has_hangul(result.comment)
    assert result.keywords and len(result.keywords) <= pipeline.settings.max_keywords
    assert parse_keywords(format_keywords(result.keywords)) == result.keywords
    assert result.generator == "t5"
    assert result.image_size == Image.open(path).size
    assert set(result.timings_ms) == STAGES
    assert all(value >= 0 for value in result.timings_ms.values())
    assert result.faces, "the tiny detector runs with conf=0 and must report boxes"
    assert {face.label for face in result.faces} <= set(pipeline.emotion.names)
    assert_inside(result)
    line = json.dumps(result.to_json_dict(), ensure_ascii=False)
    assert json.loads(line)["faces"][0]["box"] == [round(v, 1) for v in result.faces[0].box]


def test_boxes_are_reported_in_original_pixels_after_exif_and_downscale(
    tiny_weights_dir: Path, pipeline: Pipeline
) -> None:
    """A big EXIF-rotated JPEG gives exactly the boxes of its working image, scaled to the upload."""
    settings = make_settings(tiny_weights_dir, max_image_side=640)
    small_pipeline = Pipeline(settings, pipeline.emotion, pipeline.objects, pipeline.generators)
    upload = corpus.large_jpeg((4000, 3000), orientation=6)  # stored as 3000×4000, shown as 4000×3000
    working = decode_image(upload, max_side=640)
    assert working.image.size == (640, 480)

    big = run_one(small_pipeline, upload, sample=False)
    same_pixels = run_one(small_pipeline, corpus.encode(working.image, "PNG"), sample=False)

    assert big.image_size == (4000, 3000)
    assert same_pixels.image_size == (640, 480)
    assert len(big.faces) == len(same_pixels.faces) > 0
    scale = 4000 / 640
    for face, reference in zip(big.faces, same_pixels.faces, strict=True):
        assert face.label == reference.label
        assert face.box == pytest.approx(tuple(v * scale for v in reference.box), abs=1e-3)
    assert_inside(big)
    assert max(face.box[2] for face in big.faces) > 640  # really scaled up, not working pixels


def test_batch_returns_per_item_errors_in_order(pipeline: Pipeline, bus_jpg: Path) -> None:
    photo = bus_jpg.read_bytes()
    hostile = corpus.hostile_images()
    results = pipeline.run_batch(
        [
            PipelineRequest(photo),
            PipelineRequest(b""),
            PipelineRequest(photo, generator="nope"),
            PipelineRequest(hostile["truncated_jpeg"][0]),
            PipelineRequest(photo, generator="GPT2", sample=False),
            PipelineRequest(b"hello, not a photo"),
        ]
    )
    assert len(results) == 6
    assert isinstance(results[0], CommentResult) and results[0].generator == "t5"
    assert isinstance(results[1], EmptyImageError)
    assert isinstance(results[2], UnknownGeneratorError) and results[2].available == ("gpt2", "t5")
    assert isinstance(results[3], TruncatedImageError)
    assert isinstance(results[4], CommentResult) and results[4].generator == "gpt2"
    assert isinstance(results[5], NotAnImageError)


def test_batched_and_one_by_one_detection_agree(pipeline: Pipeline, zidane_jpg: Path) -> None:
    """CPU predicts per image, GPU in one batch; same-shape images give the same boxes either way."""
    image = decode_image(zidane_jpg.read_bytes()).image
    runner = pipeline.emotion.runner
    assert runner.batched is False  # cpu
    one_by_one = runner.predict([image, image])
    try:
        runner.batched = True
        batched = runner.predict([image, image])
    finally:
        runner.batched = False
    assert len(batched) == 2 and batched[0]
    for got, want in zip(batched, one_by_one, strict=True):
        assert [b.label for b in got] == [b.label for b in want]
        for g, w in zip(got, want, strict=True):
            assert g.box == pytest.approx(w.box, abs=0.5)


def test_tiny_and_extreme_shapes_still_get_a_comment(pipeline: Pipeline) -> None:
    shapes = [(1, 1), (1, 5000), (9000, 2), (3, 3)]
    flat = [corpus.encode(Image.new("RGB", size, (90, 120, 150)), "PNG") for size in shapes]
    requests = [PipelineRequest(data) for data in flat]
    results = pipeline.run_batch(requests)
    for size, result in zip(shapes, results, strict=True):
        assert isinstance(result, CommentResult), result
        assert result.image_size == size
        assert has_hangul(result.comment)
        assert_inside(result)


def test_empty_batch(pipeline: Pipeline) -> None:
    assert pipeline.run_batch([]) == []


def test_non_images_never_reach_ultralytics_pip_install(pipeline: Pipeline) -> None:
    """ultralytics patches PIL.Image.open to pip-install pi-heif on unknown files; we disable that."""
    from ultralytics.utils import patches

    assert patches._pil_plugins_registered is True
    (result,) = pipeline.run_batch([PipelineRequest(b"\x00\x01garbage" * 10)])
    assert isinstance(result, NotAnImageError)
    assert "pi_heif" not in str(result)


def test_deterministic_mode_is_repeatable(pipeline: Pipeline, zidane_jpg: Path) -> None:
    data = zidane_jpg.read_bytes()
    first = run_one(pipeline, data, sample=False)
    second = run_one(pipeline, data, sample=False)
    assert first.comment == second.comment
    assert first.keywords == second.keywords


def test_a_failing_generator_fails_only_its_items(
    tiny_weights_dir: Path, tmp_path: Path, bus_jpg: Path
) -> None:
    """A generator whose generate() raises (impossible settings) fails its items, not the batch."""
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    broken = weights / "generators" / "broken"
    shutil.copytree(weights / "generators" / "gpt2", broken)
    meta = json.loads((broken / "generator.json").read_text(encoding="utf-8"))
    # Constrained beam search now lives on the Hub (trust_remote_code): generate() raises ValueError.
    meta["eval_generation"]["force_words_ids"] = [[5]]
    (broken / "generator.json").write_text(json.dumps(meta), encoding="utf-8")
    loaded = Pipeline.from_settings(make_settings(weights))
    photo = bus_jpg.read_bytes()
    results = loaded.run_batch(
        [PipelineRequest(photo, "broken", sample=False), PipelineRequest(photo, "t5", sample=False)]
    )
    assert isinstance(results[0], InferenceFailedError)
    assert isinstance(results[1], CommentResult)


def test_four_class_model_works_unchanged(tiny_weights_dir: Path, tmp_path: Path, zidane_jpg: Path) -> None:
    weights = tmp_path / "weights"
    make_tiny_detector(weights / "emotion" / "model.pt", ["anger", "sad", "panic", "happy"])
    shutil.copytree(tiny_weights_dir / "generators", weights / "generators")
    loaded = Pipeline.from_settings(make_settings(weights))
    assert loaded.emotion.names == ["anger", "sad", "panic", "happy"]
    result = run_one(loaded, zidane_jpg.read_bytes())
    assert result.faces
    assert all(face.keyword in {"분노", "슬픔", "공포", "기쁨"} for face in result.faces)
    assert result.keywords[0] in {"분노", "슬픔", "공포", "기쁨"}


def test_settings_override_detector_metadata(tiny_weights_dir: Path, bus_jpg: Path) -> None:
    loaded = Pipeline.from_settings(make_settings(tiny_weights_dir, emotion_conf=0.99, emotion_imgsz=256))
    assert loaded.emotion.runner.imgsz == 256
    result = run_one(loaded, bus_jpg.read_bytes())
    assert result.faces == []  # nothing in a random model reaches 99 %
    assert result.keywords == []  # no face, no object: no keyword is invented
    assert has_hangul(result.comment)
    assert not claims_mood(result.comment)  # an honest comment about the photo itself
    assert result.fallback  # written by a template, not the generator


def test_second_stage_classifier_relabels_faces(
    tiny_weights_dir: Path, tmp_path: Path, zidane_jpg: Path
) -> None:
    face_classifier = pytest.importorskip("inference.models.face_classifier")
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    config = face_classifier.ClassifierConfig(classes=("sadness", "surprise"), widths=(8, 16))
    model = face_classifier.EmotionCNN(config)
    face_classifier.save_checkpoint(weights / "emotion" / "classifier.pt", model, config, {})
    metadata_file = weights / "emotion" / "metadata.json"
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    metadata["classifier"] = "classifier.pt"
    metadata_file.write_text(json.dumps(metadata), encoding="utf-8")

    loaded = Pipeline.from_settings(make_settings(weights))
    result = run_one(loaded, zidane_jpg.read_bytes())
    assert result.faces
    assert {face.label for face in result.faces} <= {"sadness", "surprise"}
    assert {face.keyword for face in result.faces} <= {"슬픔", "공포"}
    assert all(0.0 <= face.confidence <= 1.0 for face in result.faces)  # the detector's confidence


def test_optional_object_detector_adds_korean_object_keywords(
    tiny_weights_dir: Path, tmp_path: Path, bus_jpg: Path
) -> None:
    names = ["Glasses", "Tree", "Human face", "Flux capacitor", "bus"]
    object_weights = make_tiny_detector(tmp_path / "objects.pt", names, write_metadata=False)
    settings = make_settings(tiny_weights_dir, object_weights=str(object_weights), object_conf=0.0)
    loaded = Pipeline.from_settings(settings)
    assert loaded.objects is not None
    result = run_one(loaded, bus_jpg.read_bytes())
    assert result.objects
    for obj in result.objects:
        assert obj.label in names
        assert obj.keyword == object_keyword(obj.label)  # Korean name; None for generic/unknown
    assert result.keywords == build_keywords(result.faces, result.objects, settings.max_keywords)
    assert result.timings_ms["objects"] > 0
    assert_inside(result)


def test_weights_setting_resolution(tiny_weights_dir: Path) -> None:
    settings = make_settings(tiny_weights_dir)
    local = resolve_weights(settings, "emotion/model.pt")
    assert Path(local) == tiny_weights_dir / "emotion" / "model.pt"
    assert resolve_weights(settings, "yolov10n.pt") == "yolov10n.pt"  # ultralytics downloads it (not here)
    with pytest.raises(FileNotFoundError):
        resolve_weights(settings, "emotion/nope.pt")


def test_missing_emotion_weights_is_a_clear_startup_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights"):
        Pipeline.from_settings(make_settings(tmp_path, emotion_weights="emotion/missing.pt"))


def test_generator_names(pipeline: Pipeline) -> None:
    assert pipeline.generator_names() == ["gpt2", "t5"]
    assert pipeline.device == "cpu"


def _shipped_weights_ready() -> bool:
    return (DEFAULT_WEIGHTS_DIR / "emotion" / "model.pt").is_file() and any(
        (DEFAULT_WEIGHTS_DIR / "generators").glob("*/generator.json")
    )


@pytest.mark.skipif(not _shipped_weights_ready(), reason="shipped weights not in weights/ yet")
def test_shipped_weights_comment_on_a_photo_with_faces(zidane_jpg: Path) -> None:
    settings = make_settings(DEFAULT_WEIGHTS_DIR)
    loaded = Pipeline.from_settings(settings)
    buffer = io.BytesIO()
    # The head of the man on the right of zidane.jpg (Zidane's smile), as a PNG upload.
    Image.open(zidane_jpg).crop((700, 0, 1180, 480)).save(buffer, format="PNG")
    for name in loaded.generator_names():
        result = run_one(loaded, buffer.getvalue(), generator=name, sample=False)
        assert has_hangul(result.comment)
        assert "\ufffd" not in result.comment
        assert len(result.faces) == 1, "one face in the crop, reported once"
        face = result.faces[0]
        # Its emotion leads the keywords; a neutral face adds none (and so claims no mood).
        assert result.keywords[:1] == ([face.keyword] if face.keyword else [])
        assert face.keyword or not claims_mood(result.comment)
        assert_inside(result)


def test_shipped_weights_write_zidanes_smile_with_each_generator(zidane_jpg: Path) -> None:
    """The README's first photo: Zidane's face is found and smiles (the first classifier called it anger),
    and each generator writes the comment from that emotion."""
    loaded = Pipeline.from_settings(make_settings(DEFAULT_WEIGHTS_DIR))
    for name in loaded.generator_names():
        result = run_one(loaded, zidane_jpg.read_bytes(), generator=name, sample=False)
        strongest = max(result.faces, key=lambda f: f.confidence)
        assert strongest.label == "happy" and result.keywords[0] == strongest.keyword == "기쁨"
        assert not result.fallback and result.generator == name
        assert has_hangul(result.comment) and "\ufffd" not in result.comment


def test_shipped_weights_name_the_bus_of_bus_jpg(bus_jpg: Path) -> None:
    """The joint detector finds the bus at a confidence the object check lets it name at the shipped object
    threshold (0.20 since session 14; 0.55 without the check, where bus.jpg had no object keyword)."""
    loaded = Pipeline.from_settings(make_settings(DEFAULT_WEIGHTS_DIR))
    result = run_one(loaded, bus_jpg.read_bytes(), sample=False)
    assert "bus" in {thing.label for thing in result.objects} and "버스" in result.keywords
    assert loaded.emotion.object_check is not None


def test_a_face_found_twice_with_two_emotions_is_reported_once() -> None:
    from inference.models.detect import RawBox, one_box_per_face

    face = (10.0, 10.0, 110.0, 110.0)
    boxes = [
        RawBox("anger", 0.39, (11.0, 12.0, 111.0, 112.0)),
        RawBox("sad", 0.48, face),
        RawBox("happy", 0.30, (300.0, 10.0, 400.0, 110.0)),  # another face
    ]
    kept = one_box_per_face(boxes)
    assert [(b.label, b.box) for b in kept] == [("sad", face), ("happy", (300.0, 10.0, 400.0, 110.0))]


def test_a_face_box_inside_its_head_box_is_reported_once() -> None:
    """Seen on the shipped model: the face and a head-sized box around it (IoU only ~0.3)."""
    from inference.models.detect import RawBox, one_box_per_face

    head = (210.0, 10.0, 385.0, 308.0)
    boxes = [
        RawBox("sad", 0.49, head),
        RawBox("sad", 0.48, (228.0, 122.0, 350.0, 260.0)),
        RawBox("happy", 0.40, (150.0, 200.0, 260.0, 330.0)),  # a neighbour overlapping the head box
    ]
    kept = one_box_per_face(boxes)
    assert [b.box for b in kept] == [head, (150.0, 200.0, 260.0, 330.0)]


def test_joint_everyday_model_is_loaded_as_faces_and_objects(
    tiny_weights_dir: Path, tmp_path: Path, zidane_jpg: Path
) -> None:
    """The shipped everyday detector is one model: emotion classes are faces, the rest objects."""
    weights = tmp_path / "weights"
    names = ["anger", "sad", "panic", "happy", "neutral", "car", "dog", "person"]
    make_tiny_detector(weights / "emotion" / "model.pt", names)
    shutil.copytree(tiny_weights_dir / "generators", weights / "generators")
    loaded = Pipeline.from_settings(make_settings(weights, emotion_conf=0.0, object_conf=0.0))
    assert loaded.objects is None  # no separate object model: the joint model's objects are used
    assert loaded.emotion.object_names == ["car", "dog", "person"]
    result = run_one(loaded, zidane_jpg.read_bytes())
    assert {face.label for face in result.faces} <= set(names[:5])
    assert {obj.label for obj in result.objects} <= {"car", "dog", "person"}
    assert_inside(result)


class StubRunner:
    """A ``YoloRunner`` stand-in with fixed boxes: the split into faces and objects, deterministically."""

    def __init__(self, boxes: list[RawBox], conf: float = 0.3) -> None:
        self.boxes = boxes
        self.conf = conf
        self.names = dict(enumerate(["anger", "sad", "panic", "happy", "neutral", "car", "dog", "person"]))

    def predict(self, images: list[Image.Image]) -> list[list[RawBox]]:
        return [list(self.boxes) for _ in images]


def test_joint_model_splits_faces_and_objects_with_their_own_thresholds() -> None:
    boxes = [
        RawBox("happy", 0.9, (10, 10, 60, 60)),
        RawBox("sad", 0.2, (100, 10, 150, 60)),  # below the face threshold
        RawBox("car", 0.5, (0, 100, 200, 200)),
        RawBox("dog", 0.35, (50, 120, 90, 190)),  # below the object threshold
        RawBox("person", 0.9, (0, 0, 300, 200)),
    ]
    detector = EmotionDetector(StubRunner(boxes), None, object_conf=0.4)  # type: ignore[arg-type]
    assert detector.runner.conf == 0.3  # predict at the lower of the two thresholds
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))
    ((faces, objects),) = detector.detect_all([item])
    assert [face.label for face in faces] == ["happy"]
    assert [obj.label for obj in objects] == ["car", "person"]
    assert build_keywords(faces, objects, max_keywords=4) == ["기쁨", "차"]  # person: never a keyword


class MirrorRunner(StubRunner):
    """Fixed boxes for each photo and for its mirror image (``predict_with_mirror``)."""

    def __init__(self, photo: list[RawBox], mirror: list[RawBox]) -> None:
        super().__init__(photo)
        self.mirror = mirror
        self.mirrored: list[Image.Image] = []

    def predict_with_mirror(self, images: list[Image.Image]) -> tuple[list[list[RawBox]], list[list[RawBox]]]:
        self.mirrored.extend(images)
        return [list(self.boxes) for _ in images], [list(self.mirror) for _ in images]


def test_object_flip_averages_each_object_over_the_photo_and_its_mirror_image() -> None:
    photo = [
        RawBox("happy", 0.9, (10, 10, 60, 60)),
        RawBox("car", 0.5, (0, 100, 200, 200)),
        RawBox("dog", 0.5, (250, 120, 300, 190)),  # the mirror image has no dog: 0.25
    ]
    mirror = [
        RawBox("sad", 0.9, (100, 10, 150, 60)),  # faces come from the photo only
        RawBox("car", 0.3, (120, 100, 320, 200)),  # the same car, mirrored: (0.5 + 0.3) / 2
        RawBox("dog", 0.9, (0, 0, 50, 50)),  # only the mirror image has it here: 0.45, at x 270-320
    ]
    runner = MirrorRunner(photo, mirror)
    detector = EmotionDetector(runner, None, object_conf=0.35, object_flip=True)  # type: ignore[arg-type]
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))
    ((faces, objects),) = detector.detect_all([item])
    assert [face.label for face in faces] == ["happy"]
    assert [(o.label, round(o.confidence, 3)) for o in objects] == [("dog", 0.45), ("car", 0.4)]
    assert objects[0].box == pytest.approx((270, 0, 320, 50)) and objects[1].box == pytest.approx(
        (0, 100, 200, 200)
    )
    assert runner.mirrored == [item.image]


def test_face_flip_keeps_a_face_either_view_finds_at_the_better_views_confidence() -> None:
    """With ``face_flip`` a face the model only finds in the mirror image (a profile turned the way
    it sees poorly, like Zidane's in ultralytics' zidane.jpg) counts, mapped back; a face both views
    find is one face, with the more confident view's box and emotion; objects keep their own fusion."""
    photo = [
        RawBox("happy", 0.6, (10, 10, 60, 60)),
        RawBox("sad", 0.05, (200, 20, 240, 70)),  # under the face threshold in the photo...
        RawBox("car", 0.5, (0, 100, 200, 200)),
    ]
    mirror = [
        RawBox("neutral", 0.8, (262, 12, 312, 62)),  # the happy face, mirrored: one face, this view's
        RawBox("anger", 0.3, (80, 20, 120, 70)),  # ...found in the mirror image: x 200-240 in the photo
        RawBox("sad", 0.05, (0, 180, 20, 200)),  # under the threshold in both views
        RawBox("car", 0.3, (120, 100, 320, 200)),
    ]
    runner = MirrorRunner(photo, mirror)
    detector = EmotionDetector(runner, None, object_conf=0.35, object_flip=True, face_flip=True)  # type: ignore[arg-type]
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))
    ((faces, objects),) = detector.detect_all([item])
    assert [(f.label, round(f.confidence, 3)) for f in faces] == [("neutral", 0.8), ("anger", 0.3)]
    assert faces[0].box == pytest.approx((8, 12, 58, 62)) and faces[1].box == pytest.approx(
        (200, 20, 240, 70)
    )
    assert [(o.label, round(o.confidence, 3)) for o in objects] == [("car", 0.4)]

    faces_only = EmotionDetector(MirrorRunner(photo, mirror), None, face_flip=True)  # type: ignore[arg-type]
    ((faces, _),) = faces_only.detect_all([item])  # face_flip alone still runs the mirror pass
    assert [f.label for f in faces] == ["neutral", "anger"]
    unflipped = EmotionDetector(MirrorRunner(photo, mirror), None, object_conf=0.35, object_flip=True)  # type: ignore[arg-type]
    ((faces, _),) = unflipped.detect_all([item])
    assert [f.label for f in faces] == ["happy"]  # without face_flip the faces are the photo's


class SizedRunner(StubRunner):
    """Fixed boxes per ``imgsz``: nothing at the shipped size, a small face at the second look's."""

    def __init__(self, boxes_by_size: dict[int, list[RawBox]], imgsz: int = 352) -> None:
        super().__init__(boxes_by_size[imgsz])
        self.boxes_by_size = boxes_by_size
        self.imgsz = imgsz
        self.calls: list[tuple[int, int]] = []  # (imgsz, photos) per call

    def predict(
        self, images: list[Image.Image], imgsz: int | None = None, conf: float | None = None
    ) -> list[list[RawBox]]:
        size = imgsz or self.imgsz
        self.calls.append((size, len(images)))
        return [list(self.boxes_by_size.get(size, [])) for _ in images]


class ProbabilityCheck:
    """A face check that gives each box the p(face) its width was given in ``probability``."""

    def __init__(self, probability: dict[int, float], threshold: float = 0.5) -> None:
        self.probability = probability
        self.threshold = threshold

    def crop(self, image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
        return image.crop((int(box[0]), int(box[1]), int(box[2]), int(box[3])))

    def face_probability(self, crops: list[Image.Image]) -> list[float]:
        return [self.probability[crop.width] for crop in crops]

    def is_face(self, crops: list[Image.Image]) -> list[bool]:
        return [p >= self.threshold for p in self.face_probability(crops)]


def test_second_look_searches_faceless_photos_again_at_the_larger_size() -> None:
    """A photo with no face at the shipped size is predicted once more at ``second_look.imgsz``; only
    faces over its conf that pass its stricter check are kept. Photos with a face are not re-run."""
    small = [
        RawBox("sad", 0.05, (10, 10, 30, 30)),  # 20 px wide: p(face) 0.95, kept
        RawBox("happy", 0.05, (100, 10, 130, 40)),  # 30 px: p(face) 0.7 passes the check, not the look's
        RawBox("anger", 0.01, (200, 10, 240, 50)),  # 40 px: under the look's conf
    ]
    runner = SizedRunner({352: [], 480: small})
    check = ProbabilityCheck({20: 0.95, 30: 0.7, 40: 0.99})
    look = SecondLook(imgsz=480, conf=0.02, face_check_min=0.9)
    detector = EmotionDetector(runner, face_check=check, second_look=look)  # type: ignore[arg-type]
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))
    ((faces, _),) = detector.detect_all([item])
    assert [(f.label, f.box) for f in faces] == [("sad", (10, 10, 30, 30))]
    assert runner.calls == [(352, 1), (480, 1)]

    runner = SizedRunner({352: [RawBox("happy", 0.9, (10, 10, 60, 60))], 480: small})
    check = ProbabilityCheck({50: 0.99, 20: 0.95, 30: 0.7, 40: 0.99})
    detector = EmotionDetector(runner, face_check=check, second_look=look)  # type: ignore[arg-type]
    ((faces, _),) = detector.detect_all([item])
    assert [f.label for f in faces] == ["happy"] and runner.calls == [(352, 1)]

    unchecked = EmotionDetector(SizedRunner({352: [], 480: small}), second_look=look)  # type: ignore[arg-type]
    assert unchecked.second_look is None  # a low-threshold larger pass needs the face check behind it
    already_large = EmotionDetector(SizedRunner({640: []}, imgsz=640), face_check=check, second_look=look)  # type: ignore[arg-type]
    assert already_large.second_look is None  # EMOTION_IMGSZ=640: a pass at 480 would see less, not more
    ((faces, _),) = unchecked.detect_all([item])
    assert faces == []


def test_pass_options_come_from_the_metadata_with_plain_defaults() -> None:
    """The bot's loader and ``training.evaluate_detector`` read the same keys through ``pass_options``."""
    assert pass_options({}) == {
        "object_flip": False,
        "face_flip": False,
        "second_look": None,
        "emotion_min": 0.0,
        "object_groups": (),
        "object_naming": None,
    }
    metadata = {
        "object_flip": True,
        "face_flip": True,
        "second_look": {"imgsz": 480, "conf": 0.02, "face_check_min": 0.9},
        "emotion_min": 0.35,
        "object_groups": [{"label": "pet", "members": ["dog", "cat"], "conf": 0.05, "check_min": 0.5}],
        "object_naming": {"power": 0.5, "min_probability": 0.01, "nms_iou": 0.5},
    }
    assert pass_options(metadata) == {
        "object_flip": True,
        "face_flip": True,
        "second_look": SecondLook(imgsz=480, conf=0.02, face_check_min=0.9),
        "emotion_min": 0.35,
        "object_groups": (ObjectGroup("pet", ("dog", "cat"), 0.05, 0.5),),
        "object_naming": ObjectNaming(power=0.5, min_probability=0.01, nms_iou=0.5),
    }


class GroupCheck:
    """An object check with fixed class probabilities per crop width (dog and cat half-and-half)."""

    def __init__(self, probabilities: dict[int, dict[str, float]], threshold: float = 0.55) -> None:
        self.probabilities = probabilities
        self.threshold = threshold

    def crop(self, image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
        return image.crop((int(box[0]), int(box[1]), int(box[2]), int(box[3])))

    def keeps(self, crops: list[Image.Image], labels: list[str]) -> list[bool]:
        return [
            self.probabilities[c.width].get(label, 0.0) >= self.threshold
            for c, label in zip(crops, labels, strict=True)
        ]

    def group_probability(self, crops: list[Image.Image], members: list[str]) -> list[float]:
        return [sum(self.probabilities[c.width].get(m, 0.0) for m in members) for c in crops]


def test_an_object_group_names_a_pet_the_check_cannot_tell_dog_or_cat() -> None:
    """No dog or cat passes the check by itself (0.35 / 0.30 < 0.55), but dog + cat (0.65) passes the
    group's 0.5: the photo gets 반려동물. A dog named by itself leaves the group out; so does a photo
    whose only member box is under the group's conf, and a detector without an object check."""
    unsure = {40: {"dog": 0.35, "cat": 0.30}, 30: {"dog": 0.9}, 20: {"car": 0.9}}
    group = ObjectGroup("pet", ("dog", "cat"), conf=0.05, check_min=0.5)
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))

    checked = GroupCheck(unsure)

    def objects(boxes: list[RawBox], check: GroupCheck | None = checked) -> list[str]:
        detector = EmotionDetector(
            StubRunner(boxes), None, object_conf=0.4, object_check=check, object_groups=[group]
        )  # type: ignore[arg-type]
        ((_, found),) = detector.detect_all([item])
        return [o.keyword or "" for o in found]

    dog_box = RawBox("dog", 0.08, (100, 100, 140, 140))  # 40 px: the unsure crop
    assert objects([RawBox("car", 0.9, (0, 0, 20, 20)), dog_box]) == ["차", "반려동물"]
    assert objects([RawBox("dog", 0.9, (0, 0, 30, 30)), dog_box]) == ["개"]  # named by itself
    assert objects([RawBox("dog", 0.04, (100, 100, 140, 140))]) == []  # under the group's conf
    assert objects([dog_box], check=None) == []  # a group needs the check that judges it


class FixedClassifier:
    """An emotion classifier that reads every crop as ``label`` with probability ``p``."""

    def __init__(self, label: str, p: float) -> None:
        self.label, self.p = label, p

    def classify(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        return [(self.label, self.p) for _ in crops]


@pytest.mark.parametrize(("p", "label"), [(0.29, "neutral"), (0.35, "sad"), (0.8, "sad")])
def test_a_barely_read_emotion_is_no_mood(p: float, label: str) -> None:
    """Under ``emotion_min`` the classifier's best class is a guess (bus.jpg's middle man: "sad" at 0.29
    of five classes): the face stays, as neutral, and gives no emotion keyword."""
    runner = StubRunner([RawBox("happy", 0.9, (10, 10, 60, 60))])
    classifier = FixedClassifier("sad", p)
    detector = EmotionDetector(runner, classifier, emotion_min=0.35)  # type: ignore[arg-type]
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))
    ((faces, _),) = detector.detect_all([item])
    assert [f.label for f in faces] == [label]
    assert build_keywords(faces, [], max_keywords=4) == ([] if label == "neutral" else ["슬픔"])


def test_keywords_only_request_skips_decoding_and_detection(pipeline: Pipeline) -> None:
    """🔄: a new comment for stored keywords; no image, so no decode or detector stage runs."""
    result = run_one(pipeline, b"", keywords=("기쁨", "안경"), generator="gpt2")
    assert result.keywords == ["기쁨", "안경"] and result.generator == "gpt2"
    assert result.faces == [] and result.objects == [] and result.image_size == (0, 0)
    assert "decode" not in result.timings_ms and "emotion" not in result.timings_ms
    assert result.timings_ms["generate"] > 0 and has_hangul(result.comment)


def test_warmup_runs_every_generator(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up photo shows no face (a template answers it), so the generators get their own pass."""
    warmed: list[str] = []
    original = pipeline.generators.comments

    def spy(name: str, keyword_lists: object, sample: bool) -> object:
        warmed.append(name)
        return original(name, keyword_lists, sample)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline.generators, "comments", spy)
    pipeline.warmup()
    assert sorted(warmed) == pipeline.generator_names()


def test_requests_that_expire_during_the_batch_are_dropped_before_generation(
    pipeline: Pipeline, bus_jpg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot gave up on the late one (its deadline passed while the detector ran): generating its
    comment would be wasted work, so only the live request reaches the generator."""
    import time

    generated: list[int] = []
    real_comments = pipeline.generators.comments

    def counting(name: str, keywords: list[list[str]], sample: bool) -> object:
        generated.append(len(keywords))
        return real_comments(name, keywords, sample)

    monkeypatch.setattr(pipeline.generators, "comments", counting)
    data = bus_jpg.read_bytes()
    soon = time.time() + 0.001  # passes during detection
    live, late = pipeline.run_batch(
        [PipelineRequest(data, deadline=time.time() + 60), PipelineRequest(data, deadline=soon)]
    )
    assert isinstance(live, CommentResult)
    assert isinstance(late, JobTimeoutError)
    assert generated == [1]


class StubClassifier:
    def classify(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        return [("sad", 0.99) for _ in crops]


def test_classifier_relabels_the_emotion_but_keeps_the_detector_confidence() -> None:
    """Thresholds and the strongest-face order compare how surely a box is a face, not the emotion."""
    boxes = [RawBox("happy", 0.42, (10, 10, 60, 60))]
    detector = EmotionDetector(StubRunner(boxes), StubClassifier())  # type: ignore[arg-type]
    item = decode_image(corpus.encode(corpus.pattern((320, 240)), "JPEG"))
    (face,) = detector.detect([item])[0]
    assert (face.label, face.keyword, face.confidence) == ("sad", "슬픔", 0.42)


@pytest.mark.parametrize("faceless", [False, True])
def test_object_only_photos_go_to_a_generator_trained_for_them(
    faceless: bool, tiny_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects without a face emotion: the generator writes when its metadata says it learned such
    prompts (``faceless``), else an honest template does; an empty keyword list is always a template."""
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    meta_file = weights / "generators" / "t5" / "generator.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta_file.write_text(json.dumps({**meta, "faceless": faceless}, ensure_ascii=False), encoding="utf-8")
    loaded = Pipeline.from_settings(make_settings(weights))
    asked: list[list[list[str]]] = []
    original = loaded.generators.comments

    def spy(name: str, keyword_lists: list[list[str]], sample: bool) -> object:
        asked.append([list(k) for k in keyword_lists])
        return original(name, keyword_lists, sample)

    monkeypatch.setattr(loaded.generators, "comments", spy)
    objects_only = run_one(loaded, b"", keywords=("의자", "개"), generator="t5")
    nothing = run_one(loaded, b"", keywords=(), generator="t5")
    assert asked == ([[["의자", "개"]]] if faceless else [])
    assert nothing.fallback and not claims_mood(nothing.comment)
    if not faceless:
        assert objects_only.fallback and "의자" in objects_only.comment
    assert not reads_feeling(objects_only.comment)  # whoever wrote it, no feeling without a face
