"""The test suite's own guard rails: no network, offline ultralytics, loadable tiny weights."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

import pytest

from tests.conftest import NetworkAccessBlockedError, blocked_attempts, network_guard


def forget_blocked_attempts() -> None:
    blocked_attempts.clear()  # the attempts below are deliberate


@pytest.mark.parametrize(
    "address", [("example.com", 80), ("api.telegram.org", 443), ("8.8.8.8", 53), ("2001:4860:4860::8888", 53)]
)
def test_non_loopback_connections_are_blocked(address: tuple[str, int]) -> None:
    try:
        with pytest.raises(NetworkAccessBlockedError):
            socket.create_connection(address, timeout=1)
    finally:
        forget_blocked_attempts()


def test_a_swallowed_network_attempt_still_fails_the_test() -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="network"),
        network_guard(),
        contextlib.suppress(NetworkAccessBlockedError),  # what a library's broad except does
    ):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_still_works() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(16).upper())

    thread = threading.Thread(target=answer)
    thread.start()
    with socket.create_connection(("localhost", port), timeout=5) as client:
        client.sendall(b"ping")
        assert client.recv(16) == b"PING"
    thread.join(5)
    server.close()


def test_ultralytics_is_offline() -> None:
    assert os.environ["YOLO_OFFLINE"] == "1"
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    assert (config_dir / "Ultralytics" / "Arial.ttf").is_file()


def test_tiny_weights_layout(tiny_weights_dir: Path) -> None:
    from ultralytics import YOLO

    assert YOLO(str(tiny_weights_dir / "emotion" / "model.pt")).names == {
        0: "anger",
        1: "sad",
        2: "panic",
        3: "happy",
        4: "neutral",
    }
    assert (tiny_weights_dir / "emotion" / "metadata.json").is_file()
    for name in ("t5", "gpt2"):
        folder = tiny_weights_dir / "generators" / name
        assert (folder / "generator.json").is_file()
        assert (folder / "config.json").is_file()
        assert (folder / "tokenizer.json").is_file()
