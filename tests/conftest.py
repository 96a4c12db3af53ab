"""Shared test set-up: no network, offline ultralytics, tiny random weights, sample photos.

Network: every connection or name lookup that is not loopback/unix raises ``NetworkAccessBlockedError``
and is recorded; a test that tried one fails even if a library swallowed the exception.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import ipaddress
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from inference.models.runtime import prepare_offline_ultralytics
from inference.settings import Settings
from tests.fixtures.tiny_models import make_tiny_weights

if TYPE_CHECKING:
    from tests.queue_harness import Queue

# --- offline ultralytics, before anything imports it --------------------------------------------
_YOLO_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="yolo-config-"))
atexit.register(shutil.rmtree, _YOLO_CONFIG_DIR, ignore_errors=True)
prepare_offline_ultralytics(_YOLO_CONFIG_DIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # transformers loads local folders only; never ask the Hub


# --- network block -------------------------------------------------------------------------------
class NetworkAccessBlockedError(RuntimeError):
    """Raised for a non-loopback connection or lookup; deliberately not an OSError so that
    libraries' retry-on-network-error paths do not hide it."""


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
blocked_attempts: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # unix sockets, socketpairs
    host = address[0] if isinstance(address, tuple) else address
    if not _is_loopback_host(host):
        blocked_attempts.append(f"connect {address!r}")
        raise NetworkAccessBlockedError(f"tests must not touch the network (connect to {address!r})")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback_host(host):
        blocked_attempts.append(f"getaddrinfo {host!r}")
        raise NetworkAccessBlockedError(f"tests must not touch the network (lookup of {host!r})")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
socket.getaddrinfo = _guarded_getaddrinfo


@contextlib.contextmanager
def network_guard() -> Iterator[None]:
    """Fail when the block is hit inside, even if the code under test swallowed the exception."""
    start = len(blocked_attempts)
    yield
    attempts = blocked_attempts[start:]
    if attempts:
        del blocked_attempts[start:]
        pytest.fail(f"test tried to use the network: {attempts}")


@pytest.fixture(autouse=True)
def _fail_on_network_access() -> Iterator[None]:
    with network_guard():
        yield


# --- tiny weights and settings ------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random emotion detector + t5 + gpt2 generators, built once per session (read-only use)."""
    return make_tiny_weights(tmp_path_factory.mktemp("tiny-weights"))


def make_settings(weights_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: explicit values only, no ``.env`` file."""
    values: dict[str, Any] = {"weights_dir": weights_dir, "device": "cpu", "torch_threads": 2}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def tiny_settings(tiny_weights_dir: Path) -> Settings:
    return make_settings(tiny_weights_dir)


# --- sample photos ---------------------------------------------------------------------------------
def ultralytics_asset(name: str) -> Path:
    """Path of a sample image shipped inside the ultralytics package (``bus.jpg``, ``zidane.jpg``)."""
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None, "ultralytics is not installed"
    path = Path(spec.origin).parent / "assets" / name
    assert path.is_file(), f"ultralytics asset {name} missing"
    return path


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    return ultralytics_asset("bus.jpg")


@pytest.fixture(scope="session")
def zidane_jpg() -> Path:
    return ultralytics_asset("zidane.jpg")


# --- real servers: Redis and PostgreSQL ---------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis ``.ci/run`` started (``TEST_REDIS_URL``), or one started here for the session."""
    from tests.servers import redis_server

    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    with redis_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The PostgreSQL ``.ci/run`` started (``TEST_DATABASE_URL``), or one started here."""
    from tests.servers import postgres_server

    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    with postgres_server() as server:
        yield server.url


@pytest.fixture
async def queue(redis_url: str, tmp_path: Path) -> AsyncIterator[Queue]:
    """A fresh queue name on the shared Redis (tests never see each other's keys)."""
    from tests.queue_harness import Queue  # imports this module

    harness = Queue(redis_url, f"t{uuid.uuid4().hex[:10]}", tmp_path, [])
    yield harness
    for worker in harness.workers:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()
