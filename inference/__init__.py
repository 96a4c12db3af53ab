"""Inference side of the 무플방지 bot: photo → Korean keywords → Korean comment.

``serving`` moves photos between the bot and the workers, ``models`` holds the networks and the
pipeline, ``text`` the Korean text rules; ``images``, ``results``, ``errors`` and ``settings`` are shared
by all three. Importing this package is cheap and never imports torch, ultralytics or transformers;
only ``inference.models`` does.
"""
