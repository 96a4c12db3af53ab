"""A local fake of the Telegram Bot API (aiohttp on 127.0.0.1) that the real PTB ``Application`` talks to.

It implements what the bot calls — getMe, getUpdates (long poll + offset), sendMessage, sendChatAction,
getFile and file downloads under ``/file/bot<token>/``, setMyCommands, deleteWebhook, getChatMember —
records every call, and can answer the next call of a method with ``429 Too Many Requests``. With a
``FaultPlan`` (``tests/fakes/faults.py``) it also injects 5xx, dropped connections, lost responses,
truncated files, 429 storms and Telegram's per-chat flood limits; ``delivered`` lists the messages that
really landed (what a user sees), so duplicates and losses can be counted.
Tests push updates with ``push_message`` and wait for the bot's answers with ``wait_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.faults import MESSAGE_METHODS, Fault, FaultPlan

BOT_ID = 424242
BOT_USERNAME = "mupl_test_bot"
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the cloud Bot API's getFile limit


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class StoredFile:
    content: bytes
    file_path: str
    declared_size: int  # what getFile / the update says; lets tests fake a 25 MB file cheaply


class FakeTelegramServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[ApiCall] = []
        self.request_paths: list[str] = []
        self.member_status: dict[int, str] = {}  # user id → getChatMember status (default "member")
        self.rate_limit_next: dict[str, int] = {}  # method → retry_after for its next call
        self.rate_limited: list[str] = []
        self.deleted_messages: set[int] = set()  # replying to these needs allow_sending_without_reply
        self.faults: FaultPlan | None = None
        self.delivered: list[dict[str, Any]] = []  # sendMessage params (+ "_delivered_at") that landed
        self.reactions: list[dict[str, Any]] = []  # setMessageReaction params that landed
        self._updates: list[dict[str, Any]] = []
        self._files: dict[str, StoredFile] = {}
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        async with self._changed:  # release long polls, or cleanup would wait for them
            self._closing = True
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- pushing updates ---------------------------------------------------------------------
    def add_file(self, content: bytes, *, declared_size: int | None = None, suffix: str = "jpg") -> str:
        file_id = f"file-{next(self._ids)}"
        size = len(content) if declared_size is None else declared_size
        self._files[file_id] = StoredFile(content, f"photos/{file_id}.{suffix}", size)
        return file_id

    async def push_message(
        self,
        *,
        chat_id: int,
        user_id: int,
        chat_type: str = "private",
        text: str | None = None,
        caption: str | None = None,
        photo: list[tuple[bytes, int, int]] | None = None,  # (content, width, height), small → large
        document: tuple[bytes, str | None, str | None] | None = None,  # (content, file_name, mime_type)
        declared_size: int | None = None,
        reply_to: dict[str, Any] | None = None,
        media_group_id: str | None = None,
        edited: bool = False,
    ) -> int:
        """Queue a ``message`` update for getUpdates; returns its message_id."""
        message_id = next(self._message_ids)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat_id, chat_type),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if caption is not None:
            message["caption"] = caption
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        if photo is not None:
            message["photo"] = [self._photo_size(content, w, h, declared_size) for content, w, h in photo]
        if document is not None:
            content, file_name, mime_type = document
            file_id = self.add_file(content, declared_size=declared_size)
            doc: dict[str, Any] = {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_size": self._files[file_id].declared_size,
            }
            if file_name is not None:
                doc["file_name"] = file_name
            if mime_type is not None:
                doc["mime_type"] = mime_type
            message["document"] = doc
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        async with self._changed:
            kind = "edited_message" if edited else "message"
            if edited:
                message["edit_date"] = message["date"]
            self._updates.append({"update_id": next(self._ids), kind: message})
            self._changed.notify_all()
        return message_id

    def _photo_size(
        self, content: bytes, width: int, height: int, declared_size: int | None
    ) -> dict[str, Any]:
        file_id = self.add_file(content, declared_size=declared_size)
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "width": width,
            "height": height,
            "file_size": self._files[file_id].declared_size,
        }

    # --- observing the bot -------------------------------------------------------------------
    def calls_of(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def sent_messages(self) -> list[dict[str, Any]]:
        return [call.params for call in self.calls_of("sendMessage")]

    def replies_to(self, message_id: int) -> list[dict[str, Any]]:
        return [params for params in self.sent_messages() if _reply_target(params) == message_id]

    def answered_message_ids(self) -> set[int]:
        """Messages that got a delivered reply or a reaction."""
        replied = {_reply_target(params) for params in self.delivered}
        return {m for m in replied if m is not None} | {int(r["message_id"]) for r in self.reactions}

    def delivered_replies_to(self, message_id: int) -> list[dict[str, Any]]:
        """Replies that landed (not the attempts the fake failed): what the user sees."""
        return [params for params in self.delivered if _reply_target(params) == message_id]

    async def wait_for(self, predicate: Callable[[], Any], within_s: float = 20.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked after every API call, and every 50 ms for
        state outside the server); return its value."""
        async with asyncio.timeout(within_s), self._changed:
            while not (value := predicate()):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()
            return value

    async def wait_for_reply(self, message_id: int, within_s: float = 20.0) -> dict[str, Any]:
        replies = await self.wait_for(lambda: self.replies_to(message_id), within_s)
        return dict(replies[0])

    # --- handlers ----------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.request_paths.append(request.path)
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _params(request)
        if method.lower() != "getupdates":
            await self._record(method, params)
        retry_after = self.rate_limit_next.pop(method, None)
        if retry_after is not None:
            self.rate_limited.append(method)
            return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return _error(404, f"Not Found: method {method} not in the fake")
        refusal = self._refusal(method, params)
        if refusal is not None:
            return refusal
        fault = self.faults.fault_for(method, _request_key(method, params)) if self.faults else None
        if fault is not None and fault != "lost":
            return await _misbehave(request, fault, None)
        result: web.StreamResponse = await handler(params)
        return await _misbehave(request, fault, result) if fault == "lost" else result

    def _refusal(self, method: str, params: dict[str, Any]) -> web.Response | None:
        """429 for a storm or a chat over its flood limit (the request is not applied)."""
        plan = self.faults
        if plan is None or method.lower() == "getupdates":
            return None
        if plan.storming():
            self.rate_limited.append(method)
            wait = plan.storm_retry_after
            return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        if plan.flood is not None and method.lower() in MESSAGE_METHODS and "chat_id" in params:
            wait_s = plan.flood.retry_after(int(params["chat_id"]))
            if wait_s is not None:
                self.rate_limited.append(method)
                return _error(429, f"Too Many Requests: retry after {wait_s}", retry_after=wait_s)
        return None

    async def _record(self, method: str, params: dict[str, Any]) -> None:
        async with self._changed:
            self.calls.append(ApiCall(method, params))
            self._changed.notify_all()

    async def _m_getme(self, params: dict[str, Any]) -> web.Response:
        return _ok(_bot_user())

    async def _m_getupdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)

        def pending() -> list[dict[str, Any]]:
            return [u for u in self._updates if u["update_id"] >= offset]

        async with self._changed:
            # Telegram drops confirmed updates once a higher offset is requested.
            self._updates = pending()
            if not self._updates and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._changed.wait_for(lambda: bool(pending()) or self._closing)
            return _ok(pending())

    async def _m_sendmessage(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        target = _reply_target(params)
        if target in self.deleted_messages and not _allows_sending_without_reply(params):
            return _error(400, "Bad Request: message to be replied not found")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(chat_id, "private" if chat_id > 0 else "supergroup"),
            "from": _bot_user(),
            "text": params.get("text", ""),
        }
        async with self._changed:
            self.delivered.append({**params, "_delivered_at": time.monotonic()})
            self._changed.notify_all()
        return _ok(message)

    async def _m_setmessagereaction(self, params: dict[str, Any]) -> web.Response:
        async with self._changed:
            self.reactions.append(params)
            self._changed.notify_all()
        return _ok(True)

    async def _m_sendchataction(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_setmycommands(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_deletewebhook(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_setwebhook(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    def message_update(self, **message_fields: Any) -> dict[str, Any]:
        """A ``message`` update built like ``push_message`` but returned instead of queued (webhooks)."""
        message_id = next(self._message_ids)
        chat_id = int(message_fields.pop("chat_id"))
        user_id = int(message_fields.pop("user_id"))
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat_id, "private"),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            **message_fields,
        }
        text = message.get("text")
        if isinstance(text, str) and text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return {"update_id": next(self._ids), "message": message}

    async def _m_getchatmember(self, params: dict[str, Any]) -> web.Response:
        user_id = int(params["user_id"])
        status = self.member_status.get(user_id, "member")
        member: dict[str, Any] = {
            "status": status,
            "user": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
        }
        if status == "creator":
            member["is_anonymous"] = False
        if status == "administrator":
            member.update(_ADMIN_RIGHTS)
        return _ok(member)

    async def _m_getfile(self, params: dict[str, Any]) -> web.Response:
        stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            return _error(400, "Bad Request: invalid file_id")
        if stored.declared_size > DOWNLOAD_LIMIT:
            return _error(400, "Bad Request: file is too big")
        file_id = str(params["file_id"])
        return _ok(
            {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_size": stored.declared_size,
                "file_path": stored.file_path,
            }
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.request_paths.append(request.path)
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        await self._record("download", {"file_path": path})
        if self.faults is not None and self.faults.storming():
            return _error(429, "Too Many Requests", retry_after=self.faults.storm_retry_after)
        fault = self.faults.fault_for("download", (path,)) if self.faults else None
        for stored in self._files.values():
            if stored.file_path == path:
                response = web.Response(body=stored.content, content_type="application/octet-stream")
                return await _misbehave(request, fault, response) if fault else response
        return web.Response(status=404)


_ADMIN_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
}


def _bot_user() -> dict[str, Any]:
    return {"id": BOT_ID, "is_bot": True, "first_name": "무플방지", "username": BOT_USERNAME}


def _chat(chat_id: int, chat_type: str) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = f"user{chat_id}"
    else:
        chat["title"] = f"group {chat_id}"
    return chat


def bot_message(chat_id: int, message_id: int, text: str = "이전 댓글") -> dict[str, Any]:
    """A message the bot sent earlier, for ``push_message(reply_to=...)``."""
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": _chat(chat_id, "supergroup" if chat_id < 0 else "private"),
        "from": _bot_user(),
        "text": text,
    }


def _request_key(method: str, params: dict[str, Any]) -> tuple[object, ...]:
    """What makes two attempts "the same request" for ``FaultPlan.first_attempt``."""
    if method.lower() == "getfile":
        return (params.get("file_id"),)
    return (params.get("chat_id"), _reply_target(params), params.get("text"), params.get("message_id"))


async def _misbehave(
    request: web.Request, fault: Fault, applied: web.StreamResponse | None
) -> web.StreamResponse:
    """Answer with ``fault``; ``applied`` is the real response when the request was applied ("lost")."""
    if fault == "500":
        return _error(500, "Internal Server Error")
    if fault == "502":
        html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        return web.Response(status=502, text=html, content_type="text/html")
    body = applied.body if isinstance(applied, web.Response) and isinstance(applied.body, bytes) else b""
    if fault == "truncate":
        return web.Response(body=body[: len(body) // 2], content_type="application/octet-stream")
    transport = request.transport
    if fault == "lost" and transport is not None:  # headers and half the body, then the line goes dead
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        transport.close()
        return response
    if transport is not None:  # "drop": closed without a word, nothing applied
        transport.close()
    return web.Response(status=204)


def _reply_target(params: dict[str, Any]) -> int | None:
    if "reply_to_message_id" in params:
        return int(params["reply_to_message_id"])
    reply = params.get("reply_parameters")
    if isinstance(reply, dict) and "message_id" in reply:
        return int(reply["message_id"])
    return None


def _allows_sending_without_reply(params: dict[str, Any]) -> bool:
    reply = params.get("reply_parameters")
    nested = isinstance(reply, dict) and bool(reply.get("allow_sending_without_reply"))
    return nested or bool(params.get("allow_sending_without_reply"))


async def _params(request: web.Request) -> dict[str, Any]:
    """PTB sends form fields whose complex values are JSON strings (or multipart); decode both."""
    if request.content_type == "application/json":
        data = await request.json()
        return dict(data) if isinstance(data, dict) else {}
    form = await request.post()
    params: dict[str, Any] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str, *, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)
