"""Process set-up for the model side: offline ultralytics, thread counts, device choice.

Call ``prepare_offline_ultralytics()`` before the first ``import ultralytics`` and
``set_torch_threads()`` after it: ultralytics probes DNS unless ``YOLO_OFFLINE=1``, asks GitHub for
Arial.ttf during dataset checks unless a TTF is already in its config dir, and forces
``OMP_NUM_THREADS=1`` / ``torch.set_num_threads(cpus - 1)``, which halves CPU speed on 2 cores.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def _bundled_ttf() -> Path | None:
    """A TTF that ships with an installed package (matplotlib's DejaVu Sans), used as a stand-in."""
    try:
        import matplotlib

        candidate = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return candidate if candidate.exists() else None
    except ImportError:
        return None


def prepare_offline_ultralytics(config_dir: Path | None = None) -> Path:
    """Make ultralytics work without network; returns its config dir. Idempotent."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if config_dir is None:
        config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or Path.home() / ".config")
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    source = _bundled_ttf()
    for name in _FONT_NAMES:
        target = font_dir / name
        if not target.exists() and source is not None:
            shutil.copyfile(source, target)
    return config_dir


def set_torch_threads(threads: int) -> None:
    """Undo ultralytics' thread clamp; ``threads`` <= 0 means one per core."""
    import torch

    count = threads if threads > 0 else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)


def resolve_device(setting: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; other values pass through."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
