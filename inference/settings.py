"""The one typed settings object; the only code in the project that reads the environment.

Values come from environment variables (upper-case field names) and an optional ``.env`` file.
Unknown keys in ``.env`` and bad values are rejected with a clear message (see ``load_settings``).
Inference and the bots share this object because ``bot`` may import ``inference`` but not the reverse.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS_DIR = REPO_ROOT / "weights"

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")

IdList = Annotated[frozenset[int], NoDecode]


class SettingsError(ValueError):
    """Settings could not be loaded; the message says which value is wrong and why."""


def _parse_id_list(value: object) -> object:
    """Accept ``"1,2, 3"`` (the natural way to write a list in an env var) as well as real lists."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        return frozenset(int(p) for p in parts if p)
    return value


class Settings(BaseSettings):
    """Every setting of the bot and its inference worker; ``.env.example`` documents each one."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        case_sensitive=False,
        frozen=True,
        env_ignore_empty=True,  # `KEY=` in .env means "use the default"
    )

    # --- logging -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- models ----------------------------------------------------------------------------------
    weights_dir: Path = DEFAULT_WEIGHTS_DIR
    emotion_weights: str = "emotion/model.pt"  # relative to weights_dir, an absolute path, or a name
    emotion_conf: float | None = Field(default=None, ge=0.0, le=1.0)  # None: the weights' metadata
    emotion_imgsz: int | None = Field(default=None, ge=32, le=2048)  # None: the weights' metadata
    object_weights: str | None = None  # e.g. yolov8x-oiv7.pt; None/empty disables object detection
    object_conf: float | None = Field(default=None, ge=0.0, le=1.0)  # None: metadata, else 0.35
    object_imgsz: int = Field(default=640, ge=32, le=2048)
    max_keywords: int = Field(default=4, ge=1, le=10)
    default_generator: str = "t5"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    torch_threads: int = Field(default=0, ge=0, le=256)  # 0: one per CPU core

    # --- image intake ----------------------------------------------------------------------------
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=10_000)
    max_image_side: int = Field(default=1280, ge=64, le=8192)  # larger photos are downscaled once

    # --- worker queue ----------------------------------------------------------------------------
    max_batch_size: int = Field(default=8, ge=1, le=256)
    max_wait_ms: float = Field(default=10.0, ge=0.0, le=5000.0)
    max_pending: int = Field(default=64, ge=1, le=100_000)
    per_chat_limit: int = Field(default=3, ge=1, le=1000)
    job_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    worker_start_timeout_s: float = Field(default=300.0, gt=0.0)
    # refuse a photo when its expected wait (work ahead × measured time per photo) exceeds this share
    # of job_timeout_s, rather than accept it and time out
    admission_headroom: float = Field(default=0.8, gt=0.0, le=1.0)
    pipeline_factory: str = (
        "inference.models.pipeline:Pipeline.from_settings"  # "module:callable" for the worker
    )

    # --- shared queue on Redis (several bots and workers, any machines) ---------------------------
    queue_url: str | None = None  # redis://host:6379/0; None: one local worker process per bot
    queue_name: str = Field(default="mupl", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # key prefix in Redis
    queue_instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # None: host name
    queue_claim_idle_s: float = Field(default=30.0, ge=0.1, le=3600.0)  # a silent worker's jobs move on
    queue_max_tries: int = Field(default=3, ge=1, le=100)  # deliveries before the dead-letter stream
    queue_heartbeat_s: float = Field(default=5.0, ge=0.1, le=300.0)

    # --- operations ------------------------------------------------------------------------------
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics and /healthz; None: off
    metrics_listen: str = "127.0.0.1"

    # --- bots (shared) ---------------------------------------------------------------------------
    state_db: Path = Path("data/state.sqlite3")
    database_url: str | None = None  # e.g. postgresql+asyncpg://…; None: the SQLite file state_db
    feedback_retention_days: int = Field(default=180, ge=1, le=36500)
    regenerate_per_comment: int = Field(default=3, ge=0, le=20)
    regenerate_per_chat_per_hour: int = Field(default=20, ge=0, le=10_000)
    allowed_chat_ids: IdList = frozenset()  # empty: every chat
    admin_user_ids: IdList = frozenset()
    delivery_window_s: float = Field(default=60.0, gt=0.0, le=3600.0)  # retrying one reply at most this long
    download_window_s: float = Field(default=20.0, gt=0.0, le=600.0)  # retrying one photo download
    busy_notice_interval_s: float = Field(default=10.0, ge=0.0, le=3600.0)  # ≤ 1 "busy" text per chat per

    # --- Telegram --------------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_listen: str = "0.0.0.0"
    telegram_webhook_port: int = Field(default=8443, ge=1, le=65535)
    telegram_group_trigger: Literal["all", "mention"] = "all"  # mention: mention or reply to the bot
    telegram_max_download_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)

    # --- Discord ---------------------------------------------------------------------------------
    discord_bot_token: SecretStr | None = None
    discord_channel_ids: IdList = frozenset()  # empty: every channel the bot can read
    discord_prefix: str = Field(default="!", min_length=1, max_length=5)
    discord_test_guild_id: int | None = None
    discord_admin_role: str | None = None

    @field_validator("allowed_chat_ids", "admin_user_ids", "discord_channel_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        return _parse_id_list(value)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.match(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator(
        "object_weights",
        "discord_admin_role",
        "telegram_webhook_url",
        "database_url",
        "queue_url",
        "queue_instance",
        "metrics_port",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("telegram_bot_token", "discord_bot_token", "telegram_webhook_secret", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_webhook(self) -> Settings:
        if self.telegram_mode == "webhook" and not self.telegram_webhook_url:
            raise ValueError("TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_URL")
        return self

    @field_validator("queue_url")
    @classmethod
    def _check_queue_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (Redis Streams)")
        return value

    def weights_path(self, name_or_path: str) -> Path:
        """Resolve a weights setting: absolute path, or relative to ``weights_dir``."""
        path = Path(name_or_path)
        return path if path.is_absolute() else self.weights_dir / path

    @property
    def generators_dir(self) -> Path:
        return self.weights_dir / "generators"

    def resolved_threads(self) -> int:
        return self.torch_threads or os.cpu_count() or 1


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` from the environment (and overrides), turning validation errors into one
    readable ``SettingsError`` that names each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "SETTINGS"
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
