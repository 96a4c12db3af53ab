"""The models: the YOLOv10 detector with its face check and face classifier, the comment generators,
and the pipeline that runs them (preprocess → infer → postprocess). ``detect``, ``face_classifier``,
``generators`` and ``pipeline`` import torch and run only in a worker process; ``registry`` (which
generators exist) and ``runtime`` (device and thread set-up) are light, so the bot may read the registry."""
