"""Tidying a generated comment before it is chosen and sent.

The small generators sometimes end a comment in a run of emojis (``… 힘내세요! 🌧️✨✨✨`` or a dozen
``😨✨👻``): the slot check makes ending early costly, and an emoji is the cheapest way to go on.
The reference comments never put more than three emojis in a row (17 of 5,394 have
three, none more), and a run of ten reads as spam, so a run keeps its first ``MAX_EMOJI_RUN`` distinct
emojis. A ZWJ sequence (🚴‍♂️), a skin tone or a variation selector stays part of its emoji.
"""

from __future__ import annotations

import unicodedata

MAX_EMOJI_RUN = 2
_ZWJ = "\u200d"
_JOINERS = frozenset({_ZWJ, "\ufe0e", "\ufe0f", "\u20e3"})  # ZWJ, text/emoji presentation, keycap


def is_symbol(char: str) -> bool:
    """A Unicode "Symbol, other" character: every emoji (😊, ❤, 🌳) and pictographs like ✨."""
    return unicodedata.category(char) == "So"


def _is_modifier(char: str) -> bool:
    """A skin tone (U+1F3FB–U+1F3FF), joiner or presentation selector: part of the emoji before it."""
    return char in _JOINERS or 0x1F3FB <= ord(char) <= 0x1F3FF


def _pieces(text: str) -> list[tuple[str, str]]:
    """``text`` as ("emoji" | "space" | "text", piece) runs, each emoji with its joiners and modifiers."""
    pieces: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if is_symbol(char):
            end = i + 1
            while end < len(text) and (
                _is_modifier(text[end]) or (text[end - 1] == _ZWJ and is_symbol(text[end]))
            ):
                end += 1
            pieces.append(("emoji", text[i:end]))
            i = end
        elif char.isspace():
            pieces.append(("space", char))
            i += 1
        else:
            pieces.append(("text", char))
            i += 1
    return pieces


def cap_emoji_runs(text: str, most: int = MAX_EMOJI_RUN) -> str:
    """``text`` with every run of emojis (spaces between them allowed) cut to its first ``most``
    distinct emojis; everything else is kept as it is."""
    out: list[str] = []
    run: list[str] = []  # the emojis kept in the current run
    pending_space = ""
    for kind, piece in _pieces(text):
        if kind == "emoji":
            if piece in run or len(run) >= most:
                pending_space = ""
                continue
            out.append(pending_space)
            pending_space = ""
            run.append(piece)
            out.append(piece)
        elif kind == "space":
            pending_space += piece
        else:
            out.append(pending_space)
            pending_space = ""
            run = []
            out.append(piece)
    out.append(pending_space)
    return "".join(out)
