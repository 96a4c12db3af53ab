"""Generator registry metadata: which generators exist, read from ``weights/generators/<name>/``.

Torch-free on purpose: the bot process lists generator names for ``/model`` without loading models.
A generator folder is a Hugging Face ``save_pretrained`` folder (model + tokenizer) plus
``generator.json`` (``GeneratorMeta``). Dropping such a folder in adds a generator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.errors import UnknownGeneratorError

logger = logging.getLogger(__name__)

META_FILENAME = "generator.json"


class GenerationConfig(BaseModel):
    """Arguments for ``model.generate``; ``max_new_tokens`` is the fixed token budget. ``candidates``,
    ``pick`` and ``redraw_*`` are ours, not ``generate``'s (see ``generate_arguments``)."""

    model_config = ConfigDict(extra="allow")

    # How one comment is chosen from several: "first" = the model's best-ranked candidate,
    # "consensus" = the one most like the others (inference.text.choice). Beam search offers all
    # its beams; sampling draws ``candidates`` comments per prompt.
    pick: Literal["first", "consensus"] = "first"
    candidates: int = Field(default=1, ge=1, le=16)
    # When no candidate for a photo writes every object slot, generate that photo's candidates once
    # more and choose among both sets: sampling draws ``candidates`` more; beam search (the same
    # search would find the same beams) searches again with ending a comment before every slot is
    # written costing ``redraw_end_penalty`` instead of the metadata's ``slot_end_penalty``.
    redraw_incomplete: bool = False
    redraw_end_penalty: float | None = Field(default=None, ge=0.0, le=100.0)

    max_new_tokens: int = Field(default=64, ge=4, le=256)
    do_sample: bool = True
    temperature: float = Field(default=0.8, gt=0.0, le=5.0)
    top_p: float = Field(default=0.92, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)  # 0: no top-k cut (transformers would cut at 50 if left out)
    num_beams: int = Field(default=1, ge=1, le=16)
    repetition_penalty: float = Field(default=1.0, ge=1.0, le=3.0)
    no_repeat_ngram_size: int = Field(default=0, ge=0)

    def generates_again(self) -> bool:
        """``redraw_incomplete`` with something new to find: sampling draws afresh, while beam search
        only finds other beams under another ``redraw_end_penalty``."""
        return self.redraw_incomplete and (self.do_sample or self.redraw_end_penalty is not None)

    def generate_arguments(self) -> dict[str, Any]:
        """The settings ``model.generate`` understands (without our own ``pick``, ``candidates`` and
        ``redraw_*``)."""
        return self.model_dump(exclude={"pick", "candidates", "redraw_incomplete", "redraw_end_penalty"})


class GeneratorMeta(BaseModel):
    """Contents of ``generator.json``."""

    model_config = ConfigDict(extra="allow")

    architecture: Literal["seq2seq", "causal"]
    # ``{keywords}`` is replaced by the keyword string, e.g. "기쁨, 안경, 나무". For causal models the
    # comment is whatever the model writes after the filled template.
    prompt_template: str = "{keywords}"
    description: str = ""
    generation: GenerationConfig = Field(default_factory=GenerationConfig)  # the bot: sampled
    eval_generation: GenerationConfig = Field(  # evaluation: deterministic
        default_factory=lambda: GenerationConfig(do_sample=False, num_beams=4)
    )
    # True: object keywords get slot tokens in the prompt and the model writes the slots (see
    # ``inference.text.slots``); the tokenizer must know the slot tokens.
    object_slots: bool = False
    # While a slot is unwritten, ending the comment costs this much log-probability (0: nothing).
    slot_end_penalty: float = Field(default=0.0, ge=0.0, le=100.0)
    # True: on a CPU the linear layers run int8 (torch dynamic quantization), faster at a small cost
    # in quality; the metrics in ``training`` say which way the shipped folder was measured.
    cpu_int8: bool = False
    # True: trained on prompts without an emotion too (``training.faceless``), so the bot may ask it
    # for a photo where no face shows one; otherwise such photos get an honest template comment.
    faceless: bool = False
    training: dict[str, Any] = Field(default_factory=dict)  # data hash, split, metrics, params, time

    def prompt(self, keywords: str) -> str:
        return self.prompt_template.replace("{keywords}", keywords)


class GeneratorEntry(BaseModel):
    name: str
    path: Path
    meta: GeneratorMeta


def discover_generators(generators_dir: Path) -> dict[str, GeneratorEntry]:
    """All valid generator folders under ``generators_dir``, by folder name (sorted).

    A folder with a missing or broken ``generator.json`` is skipped with a warning, so one bad
    drop-in never takes the others down.
    """
    found: dict[str, GeneratorEntry] = {}
    if not generators_dir.is_dir():
        return found
    for folder in sorted(p for p in generators_dir.iterdir() if p.is_dir()):
        meta_file = folder / META_FILENAME
        if not meta_file.is_file():
            continue
        try:
            meta = GeneratorMeta.model_validate_json(meta_file.read_text(encoding="utf-8"))
        except (ValidationError, ValueError, OSError) as exc:
            logger.warning("skipping generator %s: bad %s (%s)", folder.name, META_FILENAME, exc)
            continue
        found[folder.name] = GeneratorEntry(name=folder.name, path=folder, meta=meta)
    return found


def resolve_generator(name: str, available: dict[str, GeneratorEntry]) -> GeneratorEntry:
    """The entry for ``name`` (case-insensitive), or ``UnknownGeneratorError`` listing the names."""
    key = name.strip().lower()
    for entry_name, entry in available.items():
        if entry_name.lower() == key:
            return entry
    raise UnknownGeneratorError(name, sorted(available))
