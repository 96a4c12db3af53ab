"""Local stand-ins for remote services (Telegram Bot API) and a scriptable inference client."""
