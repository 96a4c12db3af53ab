"""``python -m bot``: run the Telegram and/or Discord bot (see ``bot.app``)."""

from bot.app import main

if __name__ == "__main__":
    raise SystemExit(main())
