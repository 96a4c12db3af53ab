"""The GPU-machine path of detector training: the travel pack and the trainer wrapper, on tiny data."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.test_detector import make_yolo_split


def test_pack_holds_shrunk_train_photos_a_val_sample_labels_and_a_placeholder_path(tmp_path: Path) -> None:
    from training.pack_everyday import PLACEHOLDER, main

    data = make_yolo_split(tmp_path / "everyday", images=4, size=96)
    out = tmp_path / "pack.zip"
    main(["--everyday", str(data.parent), "--out", str(out), "--size", "48", "--val-photos", "2"])

    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        yaml_text = archive.read("everyday/data.yaml").decode()
        photo = Image.open(io.BytesIO(archive.read("everyday/images/train/train0.webp")))
        assert photo.format == "WEBP" and max(photo.size) == 48
    assert f"path: {PLACEHOLDER}" in yaml_text and str(tmp_path) not in yaml_text
    assert "train: images/train" in yaml_text
    train_photos = {n for n in names if n.startswith("everyday/images/train/")}
    assert len(train_photos) == 5  # four labelled photos and the background one
    assert len([n for n in names if n.startswith("everyday/images/val/")]) == 2
    # every labelled photo travels with its label; the background photo has none, as in the source
    assert "everyday/labels/train/train3.txt" in names
    assert "everyday/labels/train/background.txt" not in names


def test_wrapper_trains_without_polars_and_copies_stripped_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ultralytics.engine.trainer as trainer_module

    from training import device_train

    # the patches are process-wide: register the originals so that they come back after this test
    monkeypatch.setattr(
        trainer_module.BaseTrainer, "read_results_csv", trainer_module.BaseTrainer.read_results_csv
    )
    monkeypatch.setattr(trainer_module, "check_amp", trainer_module.check_amp)
    monkeypatch.setitem(sys.modules, "polars", None)  # the GPU image has no polars: importing it fails
    data = make_yolo_split(tmp_path / "faces", images=4, size=64)
    copies = tmp_path / "out"
    seen: list[dict[str, list[float]]] = []
    read = device_train.read_results_csv
    monkeypatch.setattr(
        device_train, "read_results_csv", lambda trainer: seen.append(read(trainer)) or seen[-1]
    )

    device_train.main(
        [
            *("--copy-to", str(copies), "--copy-every", "1", "--"),
            *("--base", "yolov10n.yaml", "--data", str(data), "--imgsz", "64", "--epochs", "2"),
            *("--batch", "4", "--workers", "0", "--threads", "1", "--cache", "none", "--no-plots"),
            *("--project", str(tmp_path / "runs"), "--name", "gpu", "--out", str(tmp_path / "never")),
        ]
    )

    assert {p.name for p in copies.iterdir()} >= {"last.pt", "best.pt", "results.csv", "args.yaml"}
    import torch

    copied = torch.load(copies / "last.pt", map_location="cpu", weights_only=False)
    assert copied["optimizer"] is None and next(copied["model"].parameters()).dtype == torch.float16
    assert not (tmp_path / "never").exists()  # the wrapper never ships
    assert seen and seen[-1]["epoch"] == [1.0, 2.0]  # results.csv read without polars, as columns


def test_amp_stays_off_on_a_cpu_model() -> None:
    import torch

    from training.device_train import amp_without_download

    assert amp_without_download(torch.nn.Linear(2, 2)) is False
