"""Comment generators: Korean keywords → one warm Korean comment, batched per generator.

Every folder ``weights/generators/<name>/`` with a ``generator.json`` (see ``inference.models.registry``)
is a generator; ``seq2seq`` folders load as ``Seq2SeqGenerator`` (T5, BART …) and ``causal`` ones
as ``CausalGenerator`` (GPT-2 …). Outputs are post-checked; an item that fails is retried once
with sampling and then replaced by a template comment built from its keywords, so the user
always gets a readable reply.
"""

from __future__ import annotations

import logging
import math
import random
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.pytorch_utils import Conv1D
from transformers.utils import logging as transformers_logging

from inference.errors import UnknownGeneratorError
from inference.models.registry import GenerationConfig, GeneratorEntry, GeneratorMeta, discover_generators
from inference.text.choice import choose, has_emoji
from inference.text.keywords import format_keywords, has_emotion, parse_keywords
from inference.text.slots import (
    SLOT_TOKENS,
    SlottedKeywords,
    fill_slots,
    leftover_slots,
    missing_slots,
    slot_keywords,
)
from inference.text.templates import OBJECT_EMOJI, reads_feeling, template_comment
from inference.text.tidy import cap_emoji_runs

logger = logging.getLogger(__name__)
transformers_logging.disable_progress_bar()  # "Loading weights" bars would flood the worker's log

MAX_PROMPT_TOKENS = 64  # keyword prompts are short; this only guards against absurd input
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_NOT_WORD = re.compile(r"[\W_]+")
_SAMPLING_ONLY = ("temperature", "top_p", "top_k")


@dataclass(frozen=True, slots=True)
class Comment:
    text: str
    fallback: bool = False  # True: the model failed the post-check twice; a template was used


class CommentGenerator(ABC):
    """A loaded model + tokenizer that turns keyword strings into raw comment texts."""

    def __init__(
        self,
        name: str,
        meta: GeneratorMeta,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        device: str,
    ) -> None:
        self.name = name
        self.meta = meta
        self.model: Any = model  # transformers' generate() is too dynamic for useful static types
        self.tokenizer = tokenizer
        self.device = device

    @classmethod
    def load(cls, entry: GeneratorEntry, device: str) -> CommentGenerator:
        generator_cls: type[CommentGenerator] = (
            Seq2SeqGenerator if entry.meta.architecture == "seq2seq" else CausalGenerator
        )
        return generator_cls._load(entry, device)

    @classmethod
    def _load(cls, entry: GeneratorEntry, device: str) -> CommentGenerator:
        tokenizer = AutoTokenizer.from_pretrained(entry.path, local_files_only=True)
        model = cls._model_class().from_pretrained(entry.path, local_files_only=True)
        if device.startswith("cuda"):
            model = model.to(_half_dtype())  # half the memory, faster; quality is unaffected
        model = model.to(device).eval()
        if device == "cpu" and entry.meta.cpu_int8:
            model = _int8_linear_layers(model)
        logger.info(
            "loaded generator %s (%s) from %s on %s", entry.name, entry.meta.architecture, entry.path, device
        )
        return cls(entry.name, entry.meta, model, tokenizer, device)

    @staticmethod
    @abstractmethod
    def _model_class() -> Any: ...

    def generate(self, keyword_texts: Sequence[str], sample: bool) -> list[str]:
        """One comment per keyword string (``"기쁨, 안경"``), in order; object slots already filled."""
        slotted = [self.slotted(text) for text in keyword_texts]
        config = self._config(sample)
        candidates = self._candidates(slotted, sample)
        if config.generates_again() and self.meta.object_slots:
            self._redraw_incomplete(candidates, slotted, sample)
        return [
            self._pick(options, s, config.pick, faceless=not has_emotion(parse_keywords(text)))
            for options, s, text in zip(candidates, slotted, keyword_texts, strict=True)
        ]

    def _redraw_incomplete(
        self, candidates: list[list[str]], slotted: Sequence[SlottedKeywords], sample: bool
    ) -> None:
        """Where no candidate named every object, generate once more (a beam search with the
        config's ``redraw_end_penalty``) and keep both sets (in place)."""
        incomplete = [i for i, options in enumerate(candidates) if not _any_complete(options, slotted[i])]
        if not incomplete:
            return
        logger.debug("generator %s: %d of %d generated again", self.name, len(incomplete), len(slotted))
        penalty = self._config(sample).redraw_end_penalty
        again = self._candidates([slotted[i] for i in incomplete], sample, end_penalty=penalty)
        for i, options in zip(incomplete, again, strict=True):
            candidates[i] = candidates[i] + options

    def _candidates(
        self, slotted: Sequence[SlottedKeywords], sample: bool, end_penalty: float | None = None
    ) -> list[list[str]]:
        """The raw candidates (slots unfilled) for each slotted prompt, best first; ``end_penalty``
        (default: the metadata's ``slot_end_penalty``) is what ending before every slot costs."""
        prompts = [self.meta.prompt(s.text) for s in slotted]
        per_prompt = self.candidates_per_prompt(sample)
        kwargs = self.generate_kwargs(sample)
        processors = LogitsProcessorList()
        if self.meta.object_slots:
            processors.append(
                SlotCoverage(
                    self._slot_ids(),
                    [len(s.names) for s in slotted],
                    eos_id=self.tokenizer.eos_token_id,
                    end_penalty=self.meta.slot_end_penalty if end_penalty is None else end_penalty,
                )
            )
        config = self._config(sample)
        if _draws_itself(config):
            processors.append(DrawToken(config.temperature, config.top_k, config.top_p))
            prompts = [prompt for prompt in prompts for _ in range(per_prompt)]  # one row per draw
        if processors:
            kwargs["logits_processor"] = processors
        return _grouped(self._generate(prompts, kwargs), per_prompt)

    @abstractmethod
    def _generate(self, prompts: Sequence[str], kwargs: dict[str, Any]) -> list[str]:
        """Raw texts of ``model.generate`` with ``kwargs``, flat: ``num_return_sequences`` per prompt
        in a row, best first."""

    def slotted(self, keyword_text: str) -> SlottedKeywords:
        """The keyword string as this model's prompt wants it (with slot tokens if it uses them)."""
        if not self.meta.object_slots:
            return SlottedKeywords(keyword_text, {})
        return slot_keywords(parse_keywords(keyword_text))

    def prompts(self, keyword_texts: Sequence[str]) -> list[str]:
        return [self.meta.prompt(self.slotted(text).text) for text in keyword_texts]

    def _slot_ids(self) -> list[int]:
        ids = self.tokenizer.convert_tokens_to_ids(list(SLOT_TOKENS))
        return ids if isinstance(ids, list) else [ids]

    def _config(self, sample: bool) -> GenerationConfig:
        return self.meta.generation if sample else self.meta.eval_generation

    def candidates_per_prompt(self, sample: bool) -> int:
        """Sampling draws ``candidates`` comments; beam search returns every beam for a slot model (so
        a beam naming all objects can win) or for a consensus pick, else only the best one."""
        config = self._config(sample)
        if config.do_sample:
            return config.candidates
        return config.num_beams if self.meta.object_slots or config.pick == "consensus" else 1

    @staticmethod
    def _pick(
        options: Sequence[str], slotted: SlottedKeywords, pick: str = "first", faceless: bool = False
    ) -> str:
        """Among the candidates that write every slot (else all), slots filled and emoji runs cut
        (``inference.text.tidy``), the one ``inference.text.choice`` chooses (an emoji first;
        best-ranked or consensus). For a ``faceless`` prompt (no emotion keyword) candidates that
        read a feeling into the photo go last."""
        complete = [text for text in options if _is_complete(text, slotted)] or list(options)
        filled = [fill_slots(text, slotted.names) for text in complete] if slotted.names else complete
        filled = [cap_emoji_runs(text) for text in filled]
        if faceless:
            filled = [text for text in filled if not reads_feeling(text)] or filled
        return _with_emoji(choose(filled, pick), list(slotted.names.values()))

    def generate_kwargs(self, sample: bool) -> dict[str, Any]:
        """``model.generate`` arguments from the metadata (sampled or deterministic settings).

        Plain sampling runs as greedy search with ``DrawToken`` doing the draw (added by ``generate``,
        with each prompt repeated once per draw), so the sampling settings are not passed on."""
        config = self._config(sample)
        kwargs = config.generate_arguments()
        draws_itself = _draws_itself(config)
        if draws_itself or not config.do_sample:
            for key in _SAMPLING_ONLY:  # transformers warns about sampling settings in greedy/beam mode
                kwargs.pop(key, None)
        if draws_itself:
            kwargs["do_sample"] = False
        kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        kwargs["num_return_sequences"] = 1 if draws_itself else self.candidates_per_prompt(sample)
        return kwargs

    def encode_prompts(self, prompts: Sequence[str]) -> Any:
        """The filled prompt templates as one padded, truncated batch on the model's device."""
        return self.tokenizer(
            list(prompts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=MAX_PROMPT_TOKENS,
        ).to(self.device)


class SlotCoverage(LogitsProcessor):
    """Only this prompt's slots (a slot with no object behind it is never written), each at most once,
    and every object before the end: while a slot is still missing, ending the comment costs
    ``end_penalty`` (log-probability; the metadata's ``slot_end_penalty``: a nudge, since barring the
    end outright makes a small model ramble).

    Small models like to write ``<obj1>`` again where ``<obj2>`` belongs ("핸드백과 핸드백"), or stop
    after the first object, or name an object again once all are named ("자전거가 멋지네요! 자전거도
    …": 21 of t5's 300 validation comments, 4 of the references; barred, 7). Rows are the prompts
    expanded by beams or return sequences, in order;
    the generated part starts where the input stood at the first call (the prompt for causal
    models, the start token for T5).
    """

    def __init__(
        self,
        slot_ids: Sequence[int],
        slots_per_prompt: Sequence[int],
        *,
        eos_id: int | None,
        end_penalty: float,
    ) -> None:
        self.slot_ids = torch.tensor(slot_ids)
        self.eos_id, self.end_penalty = eos_id, end_penalty
        self.counts = torch.tensor(slots_per_prompt)
        self.start: int | None = None
        self.wanted = torch.empty(0, dtype=torch.bool)  # rows × slots; set at the first step

    def _first_step(self, input_ids: torch.LongTensor) -> None:
        """Where the generated part starts, and which slots each row's prompt has (fixed per call)."""
        self.start = input_ids.shape[1]
        self.slot_ids = self.slot_ids.to(input_ids.device)
        per_row = self.counts.to(input_ids.device).repeat_interleave(input_ids.shape[0] // len(self.counts))
        self.wanted = torch.arange(len(self.slot_ids), device=input_ids.device)[None, :] < per_row[:, None]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self._first_step(input_ids)
        written = input_ids[:, self.start :]
        present = (written[:, :, None] == self.slot_ids[None, None, :]).any(dim=1)  # rows × slots
        used = present & self.wanted
        incomplete = used.sum(dim=1) < self.wanted.sum(dim=1)
        barred = used | ~self.wanted  # written once, or a slot this prompt lacks (nothing to fill it)
        slot_scores = scores[:, self.slot_ids].masked_fill(barred, -math.inf)
        scores[:, self.slot_ids] = slot_scores
        if self.eos_id is not None and self.end_penalty > 0:
            scores[incomplete, self.eos_id] -= self.end_penalty
        return scores


class DrawToken(LogitsProcessor):
    """Sampling as the last logits processor: transformers' temperature, top-k and nucleus (top-p)
    cuts, then one token drawn per row, returned as the only finite score, so ``generate`` runs its
    greedy loop and takes it. The draw is an exponential race (the argmax of p / Exp(1) is
    distributed as p). ``top_k`` 0 means no top-k cut.

    Why not ``do_sample=True``: on a CPU, ``torch.multinomial`` and the top-p warper's sort of the
    whole vocabulary took about a third of the time of a batch of 16 prompts × 4 draws; here the
    sort and the draw cover only the top-k tokens.
    """

    def __init__(self, temperature: float, top_k: int, top_p: float) -> None:
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocabulary = scores.shape[-1]
        best, tokens = scores.topk(min(self.top_k, vocabulary) or vocabulary, dim=-1)  # sorted
        probs = torch.softmax(best / self.temperature, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        # the nucleus: best first, up to and including the token whose mass reaches top_p
        probs = probs.masked_fill(mass_before >= self.top_p, 0.0)
        # an Exp(1) draw of exactly 0 would make 0/0 = NaN, which argmax takes: clamp it
        noise = torch.empty_like(probs).exponential_().clamp_min_(torch.finfo(probs.dtype).tiny)
        race = probs / noise
        drawn = tokens.gather(-1, race.argmax(dim=-1, keepdim=True))
        return cast(torch.FloatTensor, torch.full_like(scores, -math.inf).scatter_(-1, drawn, 0.0))


def _with_emoji(text: str, objects: Sequence[str]) -> str:
    """Every comment carries an emoji: when no candidate wrote one (about 1 in 2,500 sampled t5
    comments), the first object's emoji from the template bank, else ✨ (claims no mood)."""
    if has_emoji(text) or not text.strip():
        return text
    emoji = next((OBJECT_EMOJI[name] for name in objects if name in OBJECT_EMOJI), "✨")
    return f"{text} {emoji}"


def _is_complete(text: str, slotted: SlottedKeywords) -> bool:
    """The raw candidate writes every object slot of its prompt (always true without slots)."""
    return not missing_slots(text, slotted.names)


def _any_complete(options: Sequence[str], slotted: SlottedKeywords) -> bool:
    return any(_is_complete(text, slotted) for text in options)


def _draws_itself(config: GenerationConfig) -> bool:
    """Plain sampling (no beams) is drawn by ``DrawToken``; beam sampling stays transformers'."""
    return config.do_sample and config.num_beams == 1


def _grouped(texts: Sequence[str], size: int) -> list[list[str]]:
    """``num_return_sequences`` outputs come back flat, ``size`` per prompt in a row."""
    return [list(texts[start : start + size]) for start in range(0, len(texts), size)]


class Seq2SeqGenerator(CommentGenerator):
    """Encoder-decoder (T5, KoBART …): the prompt is the encoder input, the output is the comment."""

    @staticmethod
    def _model_class() -> Any:
        return AutoModelForSeq2SeqLM

    @torch.inference_mode()
    def _generate(self, prompts: Sequence[str], kwargs: dict[str, Any]) -> list[str]:
        inputs = self.encode_prompts(prompts)
        output = self.model.generate(**inputs, **kwargs)
        texts: list[str] = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [text.strip() for text in texts]


class CausalGenerator(CommentGenerator):
    """Decoder-only (GPT-2 …): the comment is what the model writes after the filled prompt template."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer.padding_side = "left"  # batched prompts must end at the same position
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @staticmethod
    def _model_class() -> Any:
        return AutoModelForCausalLM

    @torch.inference_mode()
    def _generate(self, prompts: Sequence[str], kwargs: dict[str, Any]) -> list[str]:
        inputs = self.encode_prompts(prompts)
        kwargs = dict(kwargs)
        kwargs.setdefault("eos_token_id", self.tokenizer.eos_token_id)
        output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # decode only what the model added
        texts: list[str] = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [_first_line(text) for text in texts]


def _int8_linear_layers(model: PreTrainedModel) -> PreTrainedModel:
    """Dynamic int8 quantization of the linear layers (CPU): ~1.3x faster generation for these models.

    torch marks the eager ``quantize_dynamic`` API deprecated in favour of torchao, which is not a
    dependency here; it still works in the pinned torch, and loading falls back to float32 if not.
    """
    model = _conv1d_as_linear(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The output head stays float32: int8 logits cost the most quality for the least speed.
            layers = {
                name: torch.ao.quantization.default_dynamic_qconfig
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and name != "lm_head"
            }
            quantize = torch.ao.quantization.quantize_dynamic
            quantized: PreTrainedModel = quantize(model, layers, dtype=torch.qint8)
    except (RuntimeError, AttributeError) as exc:  # a torch build without the quantized CPU kernels
        logger.warning("int8 quantization unavailable (%s); running float32", exc)
        return model
    return quantized


def _conv1d_as_linear(model: PreTrainedModel) -> PreTrainedModel:
    """GPT-2's projections are transformers' ``Conv1D`` (a linear layer stored transposed), which
    dynamic quantization skips; swap each for the same ``nn.Linear`` (in place) so it can be int8."""
    swaps = [(name, module) for name, module in model.named_modules() if isinstance(module, Conv1D)]
    for name, conv in swaps:
        linear = torch.nn.Linear(conv.nx, conv.nf)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.t())
            linear.bias.copy_(conv.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, linear)
    return model


def _half_dtype() -> torch.dtype:
    """bfloat16 where the GPU has it: T5 activations overflow float16 (inf/NaN → empty comments)."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _first_line(text: str) -> str:
    """The comment ends at the first newline (the training format is one comment per line)."""
    stripped = text.strip()
    return stripped.split("\n", 1)[0].strip()


# --- post-check and fallback ----------------------------------------------------------------------
def comment_problem(text: str, keywords: Sequence[str], prompt: str = "") -> str | None:
    """Why ``text`` is not a usable comment, or ``None`` when it is fine."""
    if not text.strip():
        return "empty"
    if "\ufffd" in text:
        return "broken characters (U+FFFD)"
    if not _HANGUL.search(text):
        return "no Hangul"
    if _is_echo(text, keywords, prompt):
        return "echo of the prompt/keywords"
    if leftover_slots(text):
        return "object slot with no object"
    return None


def _unusable(text: str, keywords: Sequence[str], prompt: str) -> str | None:
    """``comment_problem``, or a feeling read into a photo whose keywords have no emotion (no face
    showed one): a comment the bot must not send even when it reads well."""
    problem = comment_problem(text, keywords, prompt)
    if problem is None and not has_emotion(keywords) and reads_feeling(text):
        return "reads a feeling without a face emotion"
    return problem


def _is_echo(text: str, keywords: Sequence[str], prompt: str) -> bool:
    """True when the text says nothing beyond the keywords or the prompt itself."""
    squashed = _NOT_WORD.sub("", text)
    if prompt and squashed == _NOT_WORD.sub("", prompt):
        return True
    remainder = text
    for keyword in sorted(keywords, key=len, reverse=True):
        remainder = remainder.replace(keyword, " ")
    return not _HANGUL.search(remainder)


# --- the set of loaded generators ------------------------------------------------------------------
class GeneratorSet:
    """All generators found in ``weights/generators/``, loaded once; batched, post-checked comments."""

    def __init__(self, generators: dict[str, CommentGenerator], default: str) -> None:
        if not generators:
            raise FileNotFoundError("no comment generators found (weights/generators/<name>/generator.json)")
        self.generators = generators
        self.default = self._lower_names().get(default.strip().lower(), "")
        if not self.default:
            self.default = self.names()[0]
            logger.warning("default generator %r not found; using %r", default, self.default)
        self.rng = random.Random()

    @classmethod
    def from_dir(cls, generators_dir: Path, device: str, default: str) -> GeneratorSet:
        entries = discover_generators(generators_dir)
        loaded: dict[str, CommentGenerator] = {}
        for name, entry in entries.items():
            try:
                loaded[name] = CommentGenerator.load(entry, device)
            except (OSError, ValueError, RuntimeError) as exc:  # one broken drop-in must not stop the rest
                logger.error("skipping generator %s: cannot load %s (%s)", name, entry.path, exc)
        return cls(loaded, default)

    def names(self) -> list[str]:
        return sorted(self.generators)

    def writes_faceless(self, name: str) -> bool:
        """Whether generator ``name`` was trained for keywords without an emotion (``faceless``)."""
        return self.generators[self.resolve(name)].meta.faceless

    def _lower_names(self) -> dict[str, str]:
        return {name.lower(): name for name in self.generators}

    def resolve(self, name: str | None) -> str:
        """Canonical generator name (case-insensitive); ``None`` → the default."""
        if name is None or not name.strip():
            return self.default
        canonical = self._lower_names().get(name.strip().lower())
        if canonical is None:
            raise UnknownGeneratorError(name, self.names())
        return canonical

    def comments(self, name: str, keyword_lists: Sequence[Sequence[str]], sample: bool) -> list[Comment]:
        """One post-checked comment per keyword list with generator ``name``; retries failures once."""
        generator = self.generators[self.resolve(name)]
        texts = [format_keywords(keywords) for keywords in keyword_lists]
        prompts = generator.prompts(texts)
        outputs = generator.generate(texts, sample)
        failed = [i for i, out in enumerate(outputs) if _unusable(out, keyword_lists[i], prompts[i])]
        if failed:
            retried = generator.generate([texts[i] for i in failed], sample=True)
            for i, out in zip(failed, retried, strict=True):
                outputs[i] = out
        results: list[Comment] = []
        for i, out in enumerate(outputs):
            problem = _unusable(out, keyword_lists[i], prompts[i])
            if problem is None:
                results.append(Comment(out))
                continue
            logger.warning("generator %s failed the post-check twice (%s): %r", generator.name, problem, out)
            results.append(Comment(template_comment(keyword_lists[i], self.rng if sample else None), True))
        return results
