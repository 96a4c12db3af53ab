"""``python -m bot`` on the shared queue, as operators run it: real bot processes (configured only by
the environment) against the fake Telegram Bot API, a real Redis, a real PostgreSQL, and worker
processes (``python -m inference.worker --queue …``) with the scripted pipeline."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from inference.settings import REPO_ROOT
from tests.fakes.telegram_server import FakeTelegramServer
from tests.queue_harness import Queue
from tests.servers import free_port, fresh_database, wait_for_port

TOKEN = "987654321:AAH-redis-replicas-SECRET_abcdefghij"
ADMIN = 4242
SECRET = "hook-secret"

pytestmark = pytest.mark.timeout(240)


@dataclass
class Bots:
    server: FakeTelegramServer
    queue: Queue
    database_url: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    def env(self, instance: str, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TELEGRAM_", "DISCORD_", "QUEUE_", "DATABASE_", "METRICS_", "ADMIN_"))
        }
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=self.server.base_url,
            TELEGRAM_FILE_BASE_URL=self.server.base_file_url,
            WEIGHTS_DIR=str(self.queue.folder),
            QUEUE_URL=self.queue.url,
            QUEUE_NAME=self.queue.name,
            QUEUE_INSTANCE=instance,
            QUEUE_HEARTBEAT_S="0.3",
            DATABASE_URL=self.database_url,
            ADMIN_USER_IDS=str(ADMIN),
            LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env

    async def start(self, instance: str, **extra: str) -> asyncio.subprocess.Process:
        log = (self.queue.folder / f"{instance}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=self.queue.folder,
            env=self.env(instance, **extra),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, instance: str) -> str:
        return (self.queue.folder / f"{instance}.log").read_text(errors="replace")[-4000:]


@pytest.fixture
async def bots(queue: Queue, postgres_url: str) -> AsyncIterator[Bots]:
    server = FakeTelegramServer(TOKEN)
    await server.start()
    harness = Bots(server, queue, await fresh_database(postgres_url))
    worker = await queue.start_worker("w1")
    await queue.wait_for_heartbeat(worker)
    yield harness
    for process in harness.processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
    await server.close()


async def test_a_bot_killed_with_jobs_in_flight_answers_them_after_its_restart(bots: Bots) -> None:
    server = bots.server
    first = await bots.start("bot-1")
    await server.wait_for(lambda: server.calls_of("setMyCommands"), within_s=120)
    photos = [
        await server.push_message(chat_id=100 + i, user_id=100 + i, photo=[(b"sleep:4", 64, 48)])
        for i in range(3)
    ]
    await server.wait_for(lambda: len(server.calls_of("download")) == 3)
    await asyncio.sleep(0.5)  # the jobs are queued; the next getUpdates confirmed the updates
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert not any(server.replies_to(m) for m in photos)  # killed before any answer

    await bots.start("bot-1")  # same instance name: it reads the result stream of the first run
    for message_id in photos:
        reply = await server.wait_for_reply(message_id, within_s=90)
        assert reply["text"] == "sleep:4", bots.log("bot-1")
        assert "reply_markup" in reply  # stored with its feedback buttons, as if never interrupted
    await asyncio.sleep(2.0)
    assert [len(server.replies_to(m)) for m in photos] == [1, 1, 1]  # exactly once
    assert bots.log("bot-1").count("after a restart") == 3


async def test_a_result_that_comes_after_the_timeout_reply_is_not_sent_again_after_a_restart(
    bots: Bots,
) -> None:
    """The user got "took too long"; the worker still finishes, while the bot restarts: no second reply."""
    server = bots.server
    first = await bots.start("bot-1", JOB_TIMEOUT_S="2")
    await server.wait_for(lambda: server.calls_of("setMyCommands"), within_s=120)
    photo = await server.push_message(chat_id=11, user_id=11, photo=[(b"sleep:5", 64, 48)])
    timeout_reply = await server.wait_for_reply(photo, within_s=30)
    assert "오래" in timeout_reply["text"]  # JobTimeoutError's Korean sentence
    first.send_signal(signal.SIGKILL)
    await first.wait()
    await bots.start("bot-1", JOB_TIMEOUT_S="2")
    await server.wait_for(lambda: len(server.calls_of("setMyCommands")) == 2, within_s=120)
    await asyncio.sleep(6.0)  # the worker has published the late result by now
    assert len(server.replies_to(photo)) == 1, bots.log("bot-1")
    assert "already answered" in bots.log("bot-1")


async def test_two_webhook_replicas_share_the_queue_and_the_chat_settings(bots: Bots) -> None:
    server = bots.server
    ports = {name: free_port() for name in ("a", "b")}
    metrics_ports = {name: free_port() for name in ("a", "b")}
    for name, port in ports.items():
        await bots.start(
            f"replica-{name}",
            TELEGRAM_MODE="webhook",
            TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook",
            TELEGRAM_WEBHOOK_LISTEN="127.0.0.1",
            TELEGRAM_WEBHOOK_PORT=str(port),
            TELEGRAM_WEBHOOK_SECRET=SECRET,
            METRICS_PORT=str(metrics_ports[name]),
        )
    await server.wait_for(lambda: len(server.calls_of("setWebhook")) == 2, within_s=120)
    for port in ports.values():  # PTB registers the webhook first, then starts listening
        await asyncio.to_thread(wait_for_port, port)
    async with aiohttp.ClientSession() as http:

        async def post(name: str, **fields: object) -> int:
            update = server.message_update(chat_id=ADMIN, user_id=ADMIN, **fields)
            response = await http.post(
                f"http://127.0.0.1:{ports[name]}/hook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            )
            assert response.status == 200
            return int(update["message"]["message_id"])

        def photo(content: bytes) -> list[dict[str, object]]:
            return [server._photo_size(content, 64, 48, None)]

        switched = await post("a", text="/model gpt2")
        assert "gpt2" in (await server.wait_for_reply(switched))["text"]
        # replica b reads the chat's setting that replica a wrote, through PostgreSQL
        through_b = await post("b", photo=photo(b"gen"))
        assert (await server.wait_for_reply(through_b, within_s=60))["text"] == "gpt2"
        through_a = await post("a", photo=photo(b"ok:from-a"))
        assert (await server.wait_for_reply(through_a, within_s=60))["text"] == "from-a"

        stats = await post("b", text="/stats")
        stats_text = (await server.wait_for_reply(stats))["text"]
        health = await http.get(f"http://127.0.0.1:{metrics_ports['a']}/healthz")
        metrics = await (await http.get(f"http://127.0.0.1:{metrics_ports['a']}/metrics")).text()
    assert "w1 (fake)" in stats_text and "워커 1대" in stats_text
    assert health.status == 200 and (await health.json()) == {"ok": True, "queue": "redis", "workers": 1}
    assert 'mupl_photo_seconds_count{outcome="done"} 1.0' in metrics
    assert "mupl_queue_depth 0.0" in metrics and 'mupl_worker_busy_jobs{device="fake",worker="w1"}' in metrics
    for name in ("a", "b"):
        assert TOKEN not in bots.log(f"replica-{name}") and SECRET not in bots.log(f"replica-{name}")
