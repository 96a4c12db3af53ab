"""The fake Bot API with what inline keyboards need: callback queries, message edits and sendPhoto.

A subclass of ``FakeTelegramServer`` so the feedback tests add nothing to the base fake. Like the
real API, an edit that changes nothing is refused with "message is not modified".
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.telegram_server import FakeTelegramServer, _bot_user, _chat, _error, _ok, _reply_target


class ButtonsTelegramServer(FakeTelegramServer):
    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.photos_sent: list[bytes] = []  # the bytes of every sendPhoto upload
        self.message_state: dict[tuple[int, int], tuple[str, Any]] = {}  # (chat, message) → (text, markup)
        self.reply_ids: dict[int, int] = {}  # message id → id of the bot's (first) text reply to it
        self._query_ids = itertools.count(1)

    async def push_callback_query(
        self,
        *,
        chat_id: int,
        user_id: int,
        message_id: int,
        data: str,
        chat_type: str = "private",
        accessible: bool = True,
    ) -> str:
        """A button press on the bot's message ``message_id``; returns the query id.

        ``accessible=False`` sends what Telegram sends for messages older than 48 hours: only the chat
        and the message id (``date`` 0)."""
        query_id = f"q{next(self._query_ids)}"
        message: dict[str, Any] = {"message_id": message_id, "chat": _chat(chat_id, chat_type), "date": 0}
        if accessible:
            text, _ = self.message_state.get((chat_id, message_id), ("", None))
            message.update({"date": int(time.time()), "from": _bot_user(), "text": text})
        query = {
            "id": query_id,
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "chat_instance": f"ci{chat_id}",
            "data": data,
            "message": message,
        }
        async with self._changed:
            self._updates.append({"update_id": next(self._ids), "callback_query": query})
            self._changed.notify_all()
        return query_id

    # --- observing ---------------------------------------------------------------------------
    def answers_to(self, query_id: str) -> list[dict[str, Any]]:
        return [
            c.params
            for c in self.calls_of("answerCallbackQuery")
            if c.params["callback_query_id"] == query_id
        ]

    def reply_markup_of(self, message_id: int) -> list[list[dict[str, Any]]]:
        """Rows of the inline keyboard a message shows now."""
        for (_, mid), (_, markup) in self.message_state.items():
            if mid == message_id:
                return list(markup["inline_keyboard"]) if markup else []
        raise KeyError(message_id)

    def text_of(self, message_id: int) -> str:
        return next(text for (_, mid), (text, _) in self.message_state.items() if mid == message_id)

    # --- methods -----------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["method"].lower() == "sendphoto":
            form = await request.post()  # aiohttp caches it: the base class reads the same form
            upload = form.get("photo")
            if isinstance(upload, web.FileField):
                self.photos_sent.append(upload.file.read())
        return await super()._api(request)

    async def _m_sendmessage(self, params: dict[str, Any]) -> web.Response:
        response = await super()._m_sendmessage(params)
        if response.status == 200 and response.text is not None:
            sent = json.loads(response.text)["result"]
            key = (int(params["chat_id"]), int(sent["message_id"]))
            self.message_state[key] = (str(params.get("text", "")), params.get("reply_markup"))
            target = _reply_target(params)
            if target is not None:
                self.reply_ids.setdefault(target, key[1])
        return response

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_editmessagetext(self, params: dict[str, Any]) -> web.Response:
        key = (int(params["chat_id"]), int(params["message_id"]))
        return self._edit(key, str(params["text"]), params.get("reply_markup"))

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> web.Response:
        key = (int(params["chat_id"]), int(params["message_id"]))
        text, _ = self.message_state.get(key, ("", None))
        return self._edit(key, text, params.get("reply_markup"))

    def _edit(self, key: tuple[int, int], text: str, markup: Any) -> web.Response:
        if key not in self.message_state:
            return _error(400, "Bad Request: message to edit not found")
        if self.message_state[key] == (text, markup):
            return _error(400, "Bad Request: message is not modified: specified new message content and "
                               "reply markup are exactly the same")  # fmt: skip
        self.message_state[key] = (text, markup)
        chat_id, message_id = key
        message = {"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id, "private")}
        return _ok({**message, "from": _bot_user(), "text": text, "edit_date": int(time.time())})

    async def _m_sendphoto(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(chat_id, "private" if chat_id > 0 else "supergroup"),
            "from": _bot_user(),
            "photo": [{"file_id": "sent-photo", "file_unique_id": "usent", "width": 1, "height": 1}],
            "caption": params.get("caption", ""),
        }
        target = _reply_target(params)
        if target is not None:
            message["reply_to_message"] = {"message_id": target, "date": 0, "chat": message["chat"]}
        return _ok(message)
