"""Chat-platform side of the 무플방지 bot: Telegram and Discord adapters over one shared core.

The bot process never imports torch, ultralytics or transformers; models live in the inference
worker process behind ``inference.serving.client.InferenceClient``.
"""
