"""Inference side of the 무플방지 bot: photo → Korean keywords → Korean comment.

Importing this package is cheap and never imports torch, ultralytics or transformers;
the heavy modules (``detect``, ``generators``, ``pipeline``, ``worker``) import them lazily.
"""
