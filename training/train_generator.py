"""Train a comment generator (T5 or GPT-2) and save it as ``weights/generators/<name>/``.

    python -m training.train_generator --arch t5 --base scratch --max-minutes 45 --threads 1
    python -m training.train_generator --arch t5 --base paust/pko-t5-base --preset setting1
    python -m training.train_generator --arch gpt2 --base skt/kogpt2-base-v2 --preset setting1

``--base scratch`` trains a byte-level BPE tokenizer on the training split and builds a small model
from the size options; any other value is a Hugging Face model name or a local folder to fine-tune
(transformers downloads names where there is internet). Validation loss is measured every epoch, and
with ``--select-by scores`` the validation comments are decoded and scored too (char BLEU-4 + ROUGE-L F,
what the targets count: a lower loss has not always meant better comments here); training stops after
``--patience`` epochs without a better checkpoint (as the research project did), after ``--max-minutes``
or ``--max-steps``. The best checkpoint is saved as soon as it is found, so a killed run still leaves a
usable generator folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
    get_linear_schedule_with_warmup,
)

from inference.models.generators import CommentGenerator
from inference.models.registry import META_FILENAME, GenerationConfig, GeneratorEntry, GeneratorMeta
from inference.models.runtime import resolve_device
from inference.text.josa import mentions_word
from inference.text.slots import SLOT_TOKENS, empty_slots, slot_keywords
from training.augment import augment_pairs
from training.data import (
    DEFAULT_DATA,
    DEFAULT_OBJECT_NAMES,
    REPO_ROOT,
    Pair,
    file_sha256,
    holdout_object_names,
    iter_pair_rows,
    load_object_names,
    load_pairs,
    split_pairs,
    write_pairs,
)
from training.evaluate_generator import generate_all
from training.faceless import faceless_pairs
from training.metrics import bleu_scores, rouge_f_scores
from training.tokenizer import fragment_token_ids, train_tokenizer

logger = logging.getLogger(__name__)

PROMPT_TEMPLATES = {"t5": "{keywords}", "gpt2": "키워드: {keywords}\n댓글:"}
ARCHITECTURES = {"t5": "seq2seq", "gpt2": "causal"}
IGNORE_INDEX = -100
# What --keep-base-decoding carries over from the base folder's generator.json.
BASE_DECODING_FIELDS = ("generation", "eval_generation", "slot_end_penalty", "cpu_int8")
# Parts of a base folder's training record that describe the folder, not the run that made it.
NOT_A_STAGE = ("stages", "metrics", "decoding_selection", "note", "holdout_object_names")

# "setting 1" of the research project (fine-tuning pko-t5-base); "scratch" suits small models
# trained from random weights, which need a far larger learning rate.
PRESETS: dict[str, dict[str, float]] = {
    "setting1": {"lr": 5e-5, "warmup_steps": 500, "weight_decay": 0.01, "max_grad_norm": 1.0, "dropout": 0.2},
    "scratch": {"lr": 1e-3, "warmup_steps": 300, "weight_decay": 0.01, "max_grad_norm": 1.0, "dropout": 0.1},
}


@dataclass(frozen=True, slots=True)
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass(slots=True)
class EpochRecord:
    epoch: int
    step: int
    train_loss: float
    val_loss: float
    elapsed_s: float
    val_bleu4: float | None = None  # --select-by scores only
    val_rouge_l_f: float | None = None

    @property
    def score(self) -> float:
        """What ``--select-by scores`` maximises: the two target scores, equally weighted."""
        return (self.val_bleu4 or 0.0) + (self.val_rouge_l_f or 0.0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), required=True)
    parser.add_argument(
        "--base", default="scratch", help="scratch, a Hugging Face model name, or a local folder"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="jsonl of {keywords, comment}")
    parser.add_argument("--object-names", type=Path, default=DEFAULT_OBJECT_NAMES, help="OIV7 Korean names")
    parser.add_argument("--output", type=Path, help="generator folder (default weights/generators/<arch>)")
    parser.add_argument(
        "--report", type=Path, help="loss curve, metrics, split files (default <output>/report)"
    )
    parser.add_argument("--description", default="", help="one line for generator.json")
    # split
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--init-seed",
        type=int,
        default=None,
        help="seed of the weights and batch order only (default --seed); the split stays --seed's",
    )
    parser.add_argument("--val-size", type=float, default=300, help="count, or fraction if < 1")
    parser.add_argument("--test-size", type=float, default=500, help="count, or fraction if < 1")
    # augmentation
    parser.add_argument(
        "--augment-copies", type=int, default=2, help="keyword-swapped copies per pair (0: off)"
    )
    parser.add_argument(
        "--synthetic-share",
        type=float,
        default=0.5,
        help="share of swaps that use made-up names (teaches copying)",
    )
    parser.add_argument("--holdout-names", type=int, default=60, help="object names never trained on")
    parser.add_argument(
        "--extra-pairs",
        type=Path,
        help="jsonl of {keywords, comment, reference} added to the training split only, e.g. teacher comments"
        " from training.distill_comments; every (keywords, reference) must be a training pair",
    )
    parser.add_argument(
        "--faceless",
        action="store_true",
        help="also train on the training pairs' comments without their emotion and feeling sentences"
        " (training.faceless), plus --augment-copies keyword-swapped copies of them",
    )
    parser.add_argument(
        "--object-slots",
        action="store_true",
        help="the model writes <obj1>… where object names go; the bot fills them in (inference.text.slots)",
    )
    # optimisation
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="default: scratch for --base scratch, else setting1"
    )
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--max-grad-norm", type=float)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--epochs", type=int, default=200, help="upper bound; early stopping usually ends first"
    )
    parser.add_argument("--patience", type=int, default=10, help="epochs without a better checkpoint")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="end after this many epochs of the --epochs schedule (0: run it all); with --val-size 0, the"
        " epoch that validation chose for the same schedule in an earlier run",
    )
    parser.add_argument(
        "--select-by",
        choices=("loss", "scores"),
        default="loss",
        help="which checkpoint is best: the lowest validation loss, or the highest char BLEU-4 + ROUGE-L F"
        " of the validation comments decoded each epoch with the saved eval_generation (a --base folder"
        " is scored first and kept unless an epoch beats it)",
    )
    parser.add_argument(
        "--keep-base-decoding",
        action="store_true",
        help="save --base's generator.json decoding (generation, eval_generation, slot_end_penalty,"
        " cpu_int8), chosen on validation before, instead of the decoding options below",
    )
    parser.add_argument(
        "--label-smoothing", type=float, default=0.0, help="training loss only; validation stays plain"
    )
    parser.add_argument(
        "--average-last",
        type=int,
        default=0,
        help="also try the mean of the last N epochs' weights (ending at the best and at the last epoch);"
        " kept when its validation loss is lower",
    )
    parser.add_argument("--max-minutes", type=float, default=0.0, help="wall-clock budget (0: none)")
    parser.add_argument("--max-steps", type=int, default=0, help="optimizer steps (0: none); for smoke tests")
    parser.add_argument("--max-source-tokens", type=int, default=32)
    parser.add_argument("--max-target-tokens", type=int, default=64)
    # model size (scratch only)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=4, help="encoder layers (t5) or layers (gpt2)")
    parser.add_argument("--decoder-layers", type=int, default=2, help="t5 only")
    # generation settings written to generator.json
    parser.add_argument("--eval-beams", type=int, default=4)
    parser.add_argument("--no-repeat-ngram", type=int, default=3)
    parser.add_argument("--eval-length-penalty", type=float, help="beam length penalty (default 1.0)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument(
        "--suppress-fragments",
        choices=("auto", "on", "off"),
        default="auto",
        help="never generate partial-character tokens (auto: on for tokenizers trained here, i.e. scratch)",
    )
    # machine
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    args = parser.parse_args(argv)
    if args.select_by == "scores" and args.average_last > 1:
        parser.error("--average-last is judged on validation loss: it does not go with --select-by scores")
    if args.val_size == 0 and (args.select_by == "scores" or args.average_last > 1):
        parser.error("--val-size 0 trains on the validation pairs too: nothing is left to select by")
    if args.keep_base_decoding and not (Path(args.base) / META_FILENAME).is_file():
        parser.error(f"--keep-base-decoding needs a --base folder with a {META_FILENAME}")
    preset = PRESETS[args.preset or ("scratch" if args.base == "scratch" else "setting1")]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.output = args.output or REPO_ROOT / "weights" / "generators" / args.arch
    args.report = args.report or args.output / "report"
    return args


# --- model and tokenizer ---------------------------------------------------------------------------------
def build_scratch(
    args: argparse.Namespace, texts: Sequence[str]
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size, append_eos=args.arch == "t5")
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    model: PreTrainedModel
    if args.arch == "t5":
        t5_config = T5Config(
            vocab_size=len(tokenizer),
            d_model=args.d_model,
            d_kv=args.d_model // args.heads,
            d_ff=args.d_ff,
            num_layers=args.layers,
            num_decoder_layers=args.decoder_layers,
            num_heads=args.heads,
            dropout_rate=args.dropout,
            pad_token_id=pad,
            eos_token_id=eos,
        )
        t5_config.decoder_start_token_id = pad  # T5 starts decoding from the pad token
        model = T5ForConditionalGeneration(t5_config)
    else:
        tokenizer.padding_side = "left"  # batched generation continues right after the prompt
        gpt2_config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=args.max_source_tokens + args.max_target_tokens + 8,
            n_embd=args.d_model,
            n_layer=args.layers,
            n_head=args.heads,
            n_inner=args.d_ff,
            resid_pdrop=args.dropout,
            embd_pdrop=args.dropout,
            attn_pdrop=args.dropout,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=pad,
        )
        model = GPT2LMHeadModel(gpt2_config)
    return tokenizer, model


def load_base(args: argparse.Namespace) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Fine-tuning: a Hub name (downloaded where there is internet) or a local folder."""
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    if args.arch == "t5":
        model = AutoModelForSeq2SeqLM.from_pretrained(args.base, dropout_rate=args.dropout)
    else:
        drop = args.dropout
        model = AutoModelForCausalLM.from_pretrained(
            args.base, resid_pdrop=drop, embd_pdrop=drop, attn_pdrop=drop
        )
        if tokenizer.pad_token is None:  # GPT-2 has none; padding is masked out anyway
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def add_slot_tokens(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> int:
    """Give the tokenizer the object-slot tokens (ordinary tokens: decoding must keep them)."""
    missing = [token for token in SLOT_TOKENS if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
        embeddings: Any = model.get_input_embeddings()
        old_size = int(embeddings.weight.shape[0])
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        _spread_new_embeddings(model, old_size)
    return len(missing)


@torch.no_grad()
def _spread_new_embeddings(model: PreTrainedModel, old_size: int) -> None:
    """New rows drawn like the trained ones (per-dimension mean and spread), each one different.

    transformers' default puts every new token at nearly the mean embedding, so ``<obj1>`` and
    ``<obj2>`` start out indistinguishable and the model writes ``<obj1>`` for both objects.
    """
    embeddings: Any = model.get_input_embeddings()
    weight = embeddings.weight
    seeded = torch.Generator().manual_seed(0)
    noise = torch.randn(weight.shape[0] - old_size, weight.shape[1], generator=seeded)

    def draw_new_rows(matrix: torch.Tensor) -> None:
        trained = matrix[:old_size]
        matrix[old_size:] = trained.mean(0) + trained.std(0) * noise

    draw_new_rows(weight)
    output: Any = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != weight.data_ptr():  # untied head
        draw_new_rows(output.weight)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- data ------------------------------------------------------------------------------------------------
def encode(pair: Pair, tokenizer: PreTrainedTokenizerBase, args: argparse.Namespace) -> Example:
    """Token ids and labels (-100 where no loss is taken: the prompt of causal models, padding)."""
    prompt = PROMPT_TEMPLATES[args.arch].replace("{keywords}", pair.keywords)
    source = tokenizer(prompt, truncation=True, max_length=args.max_source_tokens)["input_ids"]
    if args.arch == "t5":
        target = tokenizer(text_target=pair.comment, truncation=True, max_length=args.max_target_tokens)[
            "input_ids"
        ]
        if target[-1] != tokenizer.eos_token_id:  # Hub tokenizers without a post-processor
            target = [*target, tokenizer.eos_token_id]
        return Example(input_ids=list(source), labels=list(target))
    # Tokenized separately so the prompt's tokens are exactly those the loader feeds at inference.
    comment = tokenizer(" " + pair.comment, add_special_tokens=False)["input_ids"][
        : args.max_target_tokens - 1
    ]
    ids = [*source, *comment, tokenizer.eos_token_id]
    return Example(input_ids=ids, labels=[IGNORE_INDEX] * len(source) + [*comment, tokenizer.eos_token_id])


def with_slots(pair: Pair) -> Pair:
    """The training form of a pair for a slot model: mentioned objects → ``<objN>`` in both texts."""
    mentioned = [k for k in pair.object_keywords if mentions_word(pair.comment, k)]
    slotted = slot_keywords(pair.keyword_list, mentioned)
    return Pair(keywords=slotted.text, comment=empty_slots(pair.comment, slotted.names))


def collate(batch: Sequence[Example], pad_id: int, seq2seq: bool) -> dict[str, torch.Tensor]:
    def pad(rows: Sequence[list[int]], value: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)

    input_ids = pad([e.input_ids for e in batch], pad_id)
    attention_mask = pad([[1] * len(e.input_ids) for e in batch], 0)
    labels = pad([e.labels for e in batch], IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def batches(examples: Sequence[Example], size: int, rng: random.Random | None) -> list[list[Example]]:
    order = list(range(len(examples)))
    if rng is not None:
        rng.shuffle(order)
    return [[examples[i] for i in order[start : start + size]] for start in range(0, len(order), size)]


def training_loss(model: PreTrainedModel, inputs: dict[str, torch.Tensor], label_smoothing: float) -> Any:
    """Cross-entropy per target token, smoothed towards the uniform distribution when asked (the
    model's own loss otherwise). A causal model predicts token t+1 at t, so its logits shift by one."""
    output = model(**inputs)
    if not label_smoothing:
        return output.loss
    logits, labels = output.logits, inputs["labels"]
    if not model.config.is_encoder_decoder:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
    )


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def mean_weights(snapshots: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Checkpoint averaging: the element-wise mean of floating-point weights (others from the last)."""
    last = snapshots[-1]
    return {
        name: torch.stack([s[name].float() for s in snapshots]).mean(0).to(tensor.dtype)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in last.items()
    }


@torch.inference_mode()
def validation_loss(
    model: PreTrainedModel, examples: Sequence[Example], args: argparse.Namespace, pad: int
) -> float:
    """Mean loss per target token over the validation split."""
    model.eval()
    total, tokens = 0.0, 0
    for batch in batches(examples, args.batch_size, None):
        inputs = {k: v.to(model.device) for k, v in collate(batch, pad, args.arch == "t5").items()}
        count = int((inputs["labels"] != IGNORE_INDEX).sum())
        total += float(model(**inputs).loss) * count
        tokens += count
    model.train()
    return total / max(1, tokens)


def try_averages(
    model: PreTrainedModel,
    snapshots: dict[int, dict[str, torch.Tensor]],
    best_epoch: int,
    last_epoch: int,
    best_loss: float,
    val_examples: Sequence[Example],
    args: argparse.Namespace,
    pad_id: int,
) -> dict[str, Any] | None:
    """Checkpoint averaging, judged on validation loss like every epoch: the mean of the last N epochs
    ending at the best epoch and at the last one. The better mean is loaded into ``model`` and described
    when it beats the best single epoch; otherwise nothing changes (``model`` is left as it was)."""
    window = args.average_last
    candidates = {
        tuple(e for e in range(end - window + 1, end + 1) if e in snapshots)
        for end in (best_epoch, last_epoch)
    }
    candidates = {c for c in candidates if len(c) > 1}
    if not candidates:  # averaging off, or too few epochs
        return None
    current = snapshot(model)
    best: dict[str, Any] | None = None
    best_weights = current
    for epochs in sorted(candidates):
        weights = mean_weights([snapshots[e] for e in epochs])
        model.load_state_dict(weights)
        val = validation_loss(model, val_examples, args, pad_id)
        logger.info("mean of epochs %s: val %.4f (best single epoch %.4f)", list(epochs), val, best_loss)
        if val < (best["val_loss"] if best else best_loss):
            best, best_weights = {"epochs": list(epochs), "val_loss": round(val, 4)}, weights
    model.load_state_dict(best_weights)  # the better mean, or the weights it had
    return best


# --- saving ----------------------------------------------------------------------------------------------
def loss_or_none(value: float) -> float | None:
    """A loss for the JSON records; none without validation pairs (NaN is not JSON)."""
    return None if math.isnan(value) else value


def generator_meta(
    args: argparse.Namespace,
    training: dict[str, Any],
    suppress_tokens: Sequence[int] = (),
    base_decoding: GeneratorMeta | None = None,
    base_faceless: bool = False,
) -> GeneratorMeta:
    """What ``generator.json`` says: decoding from the options, or the base folder's (``base_decoding``);
    ``faceless`` when this run or the ``--base`` folder (``base_faceless``) trained on faceless pairs."""
    meta = _meta_from_options(args, training, suppress_tokens)
    # What an earlier stage learned stays learned.
    update: dict[str, Any] = {"faceless": meta.faceless or base_faceless}
    if base_decoding is not None:
        update.update({field: getattr(base_decoding, field) for field in BASE_DECODING_FIELDS})
    return meta.model_copy(update=update)


def _meta_from_options(
    args: argparse.Namespace, training: dict[str, Any], suppress_tokens: Sequence[int]
) -> GeneratorMeta:
    max_new = args.max_target_tokens
    common: dict[str, Any] = {"max_new_tokens": max_new, "no_repeat_ngram_size": args.no_repeat_ngram}
    if suppress_tokens:
        common["suppress_tokens"] = list(suppress_tokens)
    beam: dict[str, Any] = {"num_beams": args.eval_beams}
    if args.eval_length_penalty is not None:
        beam["length_penalty"] = args.eval_length_penalty
    return GeneratorMeta(
        architecture=ARCHITECTURES[args.arch],
        prompt_template=PROMPT_TEMPLATES[args.arch],
        description=args.description or f"{args.arch} ({args.base}) trained on {args.data.name}",
        generation=GenerationConfig.model_validate(
            {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p, **common}
        ),
        eval_generation=GenerationConfig.model_validate({"do_sample": False, **beam, **common}),
        object_slots=args.object_slots,
        faceless=args.faceless,
        training=training,
    )


def save_generator(
    output: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, meta: GeneratorMeta
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)  # safetensors, float32
    tokenizer.save_pretrained(output)
    (output / META_FILENAME).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")


def record_scores(record: EpochRecord) -> dict[str, float | None]:
    return {"bleu4": record.val_bleu4, "rougeL_f": record.val_rouge_l_f}


def base_folder_meta(args: argparse.Namespace) -> GeneratorMeta | None:
    """``--base``'s ``generator.json`` when it is a folder trained here (read once per run)."""
    path = Path(args.base) / META_FILENAME
    return GeneratorMeta.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None


def earlier_record(base: GeneratorMeta | None, keep_decoding: bool) -> dict[str, Any]:
    """A ``--base`` folder trained here brings its history: ``stages``, every run that made it (oldest
    first; a folder without ``stages`` was made by one run, its record), to which this run is added
    when it ends; with ``--keep-base-decoding`` also the record of how that decoding was chosen."""
    record = base.training if base is not None else {}
    if not record:
        return {}
    runs = record.get("stages") or [{k: v for k, v in record.items() if k not in NOT_A_STAGE}]
    carried: dict[str, Any] = {"stages": list(runs)}
    if keep_decoding and "decoding_selection" in record:
        carried["decoding_selection"] = record["decoding_selection"]
    return carried


def validation_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    meta: GeneratorMeta,
    pairs: Sequence[Pair],
    device: str,
    batch_size: int = 16,
) -> dict[str, float]:
    """Char BLEU-4 and ROUGE-L F of the validation comments as the bot's loader writes them: the
    weights saved and loaded by ``CommentGenerator`` (int8 where the metadata says so), decoded with
    ``eval_generation``, object slots filled."""
    with tempfile.TemporaryDirectory(prefix="generator-epoch-") as folder:
        save_generator(Path(folder), model, tokenizer, meta)
        generator = CommentGenerator.load(GeneratorEntry(name="epoch", path=Path(folder), meta=meta), device)
        predictions = generate_all(generator, [pair.keywords for pair in pairs], batch_size)
    references = [pair.comment for pair in pairs]
    return {
        "bleu4": round(bleu_scores(references, predictions)["bleu4"], 4),
        "rougeL_f": round(rouge_f_scores(references, predictions)["rougeL_f"], 4),
    }


def plot_loss_curve(history: Sequence[EpochRecord], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [r.epoch for r in history]
    ax.plot(epochs, [r.train_loss for r in history], marker="o", label="train")
    ax.plot(epochs, [r.val_loss for r in history], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------------------
def extra_training_pairs(path: Path, train: Sequence[Pair]) -> list[Pair]:
    """``--extra-pairs``: rows made from training pairs only. A row whose ``reference`` is not the comment
    of a training pair with its keywords could carry a validation or test comment into training."""
    allowed = {(pair.keywords, pair.comment) for pair in train}
    extra: list[Pair] = []
    for number, row in enumerate(iter_pair_rows(path), start=1):
        reference = str(row.get("reference", "")).strip()
        if (row["keywords"].strip(), reference) not in allowed:
            raise ValueError(f"{path}:{number}: not made from a training pair (keywords + reference)")
        extra.append(Pair(keywords=row["keywords"].strip(), comment=row["comment"].strip()))
    return extra


def extra_pairs_record(path: Path, count: int) -> dict[str, Any]:
    return {"file": path.name, "sha256": file_sha256(path), "pairs": count}


def prepare_data(args: argparse.Namespace) -> tuple[Any, list[Pair], list[str]]:
    """Split, hold out names for the unseen-keyword test, augment the training split (and add its
    faceless pairs with --faceless)."""
    pairs = load_pairs(args.data)
    split = split_pairs(pairs, seed=args.seed, validation=args.val_size, test=args.test_size)
    augmented: list[Pair] = []
    holdout: list[str] = []
    faceless = faceless_pairs(split.train) if args.faceless else []  # cut from training pairs only
    sources = [*split.train, *faceless]
    if args.object_names.is_file():
        names = load_object_names(args.object_names)
        holdout = holdout_object_names(names, pairs, count=args.holdout_names, seed=args.seed)
        pool = [n for n in names if n not in set(holdout)]
        if args.augment_copies > 0:
            augmented = augment_pairs(
                sources,
                pool,
                copies=args.augment_copies,
                seed=args.seed,
                synthetic_share=args.synthetic_share,
            )
    elif args.augment_copies > 0:
        logger.warning("no object names at %s: training without keyword-swap augmentation", args.object_names)
    return split, [*faceless, *augmented], holdout


def write_split_files(report: Path, split: Any) -> None:
    """The test split with a ``seen`` flag (its keyword string occurs in training) for evaluation."""
    train_keywords = {p.keywords for p in split.train}
    report.mkdir(parents=True, exist_ok=True)
    with (report / "test.jsonl").open("w", encoding="utf-8") as handle:
        for pair in split.test:
            row = {**asdict(pair), "seen": pair.keywords in train_keywords}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_pairs(report / "validation.jsonl", split.validation)


def train(args: argparse.Namespace) -> dict[str, Any]:
    # The split and the augmentation follow --seed; --init-seed varies only the weights and the batch
    # order, so that runs differing in it measure the training-seed spread on the same test pairs.
    init_seed = args.seed if args.init_seed is None else args.init_seed
    random.seed(init_seed)
    torch.manual_seed(init_seed)
    split, augmented, holdout = prepare_data(args)
    extra = extra_training_pairs(args.extra_pairs, split.train) if args.extra_pairs else []
    train_pairs = [*split.train, *augmented, *extra]
    if args.base == "scratch":
        texts = [t for p in train_pairs for t in (p.keywords, p.comment)]
        tokenizer, model = build_scratch(args, texts)
    else:
        tokenizer, model = load_base(args)
    if args.object_slots:
        logger.info("object slots: %d slot tokens added", add_slot_tokens(tokenizer, model))
    suppress_on = args.suppress_fragments == "on" or (
        args.suppress_fragments == "auto" and args.base == "scratch"
    )
    suppress = fragment_token_ids(tokenizer) if suppress_on else []
    device = resolve_device(args.device)
    model.to(device)  # type: ignore[arg-type]
    params = count_parameters(model)
    logger.info("%s from %s: %.2fM parameters on %s", args.arch, args.base, params / 1e6, device)
    logger.info("pairs: %s + %d augmented + %d extra", split.sizes(), len(augmented), len(extra))

    prepare = with_slots if args.object_slots else (lambda pair: pair)
    train_examples = [encode(prepare(p), tokenizer, args) for p in train_pairs]
    val_examples = [encode(prepare(p), tokenizer, args) for p in split.validation]
    pad_id = int(tokenizer.pad_token_id)
    steps_per_epoch = math.ceil(len(train_examples) / args.batch_size)
    total_steps = args.max_steps or steps_per_epoch * args.epochs
    no_decay = ("bias", "layer_norm", "layernorm", "ln_")
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n.lower() for k in no_decay)]},
        {
            "params": [p for n, p in model.named_parameters() if any(k in n.lower() for k in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, min(args.warmup_steps, total_steps // 2), total_steps
    )

    base_meta = base_folder_meta(args)
    training_info: dict[str, Any] = {
        "base": args.base,
        "data": str(args.data.name),
        "data_sha256": file_sha256(args.data),
        "split": {"seed": args.seed, **split.sizes(), "augmented": len(augmented)},
        "init_seed": init_seed,
        "augmentation": {
            "copies": args.augment_copies,
            "synthetic_share": args.synthetic_share,
            **({"faceless": True} if args.faceless else {}),
        },
        **({"extra_pairs": extra_pairs_record(args.extra_pairs, len(extra))} if args.extra_pairs else {}),
        "object_slots": args.object_slots,
        "holdout_object_names": holdout,
        "params": params,
        "hyperparameters": {
            k: getattr(args, k)
            for k in (
                "lr",
                "warmup_steps",
                "weight_decay",
                "max_grad_norm",
                "dropout",
                "batch_size",
                "patience",
                "label_smoothing",
                "average_last",
            )
        },
        "model_size": {
            k: getattr(args, k)
            for k in ("vocab_size", "d_model", "d_ff", "heads", "layers", "decoder_layers")
        }
        if args.base == "scratch"
        else {},
        **earlier_record(base_meta, args.keep_base_decoding),
    }
    write_split_files(args.report, split)

    base_decoding = base_meta if args.keep_base_decoding else None
    base_faceless = base_meta is not None and base_meta.faceless
    scoring = args.select_by == "scores"
    # --val-size 0: the validation pairs are training pairs, so each epoch replaces the last (the epoch
    # count comes from an earlier run with validation, --stop-after).
    fit_all = not val_examples

    def save_best(record: EpochRecord, elapsed: float) -> None:
        info = {
            **training_info,
            "best_epoch": record.epoch,
            "best_val_loss": loss_or_none(round(record.val_loss, 4)),
            **({"best_val_scores": record_scores(record)} if scoring else {}),
            "train_seconds": round(elapsed),
        }
        save_generator(
            args.output, model, tokenizer, generator_meta(args, info, suppress, base_decoding, base_faceless)
        )

    def measure(record: EpochRecord) -> EpochRecord:
        if scoring:
            meta = generator_meta(args, training_info, suppress, base_decoding, base_faceless)
            found = validation_scores(model, tokenizer, meta, split.validation, device)
            record.val_bleu4, record.val_rouge_l_f = found["bleu4"], found["rougeL_f"]
        return record

    history: list[EpochRecord] = []
    snapshots: dict[int, dict[str, torch.Tensor]] = {}  # epoch → weights, the last few only
    best: EpochRecord | None = None
    start_scores: dict[str, float | None] | None = None
    bad_epochs, step = 0, 0
    start = time.monotonic()
    if scoring and args.base != "scratch":
        # The starting weights are a candidate too: training must beat them to replace them.
        best = measure(EpochRecord(0, 0, math.nan, validation_loss(model, val_examples, args, pad_id), 0.0))
        start_scores = record_scores(best)
        logger.info("start: val %.4f, %s", best.val_loss, start_scores)
        save_best(best, 0.0)
    rng = random.Random(init_seed)
    stop_reason = "epochs"
    model.train()
    for epoch in range(1, args.epochs + 1):
        running, seen = 0.0, 0
        bar = tqdm(
            batches(train_examples, args.batch_size, rng), desc=f"epoch {epoch}", disable=args.no_progress
        )
        for batch in bar:
            inputs = {k: v.to(device) for k, v in collate(batch, pad_id, args.arch == "t5").items()}
            loss = training_loss(model, inputs, args.label_smoothing)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running, seen = running + loss.item(), seen + 1
            bar.set_postfix(loss=f"{running / seen:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if args.max_steps and step >= args.max_steps:
                break
        val = math.nan if fit_all else validation_loss(model, val_examples, args, pad_id)
        record = measure(EpochRecord(epoch, step, running / max(1, seen), val, 0.0))
        elapsed = time.monotonic() - start
        record.elapsed_s = round(elapsed, 1)
        history.append(record)
        logger.info(
            "epoch %d step %d: train %.4f val %.4f%s (%.1f min)",
            epoch,
            step,
            record.train_loss,
            val,
            f", {record_scores(record)}" if scoring else "",
            elapsed / 60,
        )
        if fit_all or best is None or (record.score > best.score if scoring else val < best.val_loss):
            best, bad_epochs = record, 0
            save_best(record, elapsed)
        else:
            bad_epochs += 1
        if args.average_last > 1:  # the last N epochs, and the N ending at the best one
            snapshots[epoch] = snapshot(model)
            window = args.average_last
            snapshots = {
                e: w
                for e, w in snapshots.items()
                if e > epoch - window or best.epoch - window < e <= best.epoch
            }
        if bad_epochs >= args.patience:
            stop_reason = "early stopping"
            break
        if args.max_steps and step >= args.max_steps:
            stop_reason = "max steps"
            break
        if args.stop_after and epoch >= args.stop_after:
            stop_reason = "stop after"
            break
        if args.max_minutes and elapsed / 60 >= args.max_minutes:
            stop_reason = "time budget"
            break
        # Don't start an epoch that cannot finish inside the budget.
        if args.max_minutes and (elapsed + elapsed / epoch) / 60 > args.max_minutes * 1.05:
            stop_reason = "time budget"
            break

    if best is None:
        raise ValueError("no epoch was trained (--epochs 0?)")
    best_epoch, best_loss = best.epoch, best.val_loss
    train_seconds = time.monotonic() - start
    averaged = try_averages(model, snapshots, best_epoch, len(history), best_loss, val_examples, args, pad_id)
    if averaged is not None:
        best_loss = averaged["val_loss"]
        info = {
            **training_info,
            "best_epoch": best_epoch,
            "averaged": averaged,
            "best_val_loss": loss_or_none(round(best_loss, 4)),
        }
        save_generator(
            args.output, model, tokenizer, generator_meta(args, info, suppress, base_decoding, base_faceless)
        )
    summary = {
        **training_info,
        "best_epoch": best_epoch,
        "best_val_loss": loss_or_none(round(best_loss, 4)),
        **({"best_val_scores": record_scores(best), "start_val_scores": start_scores} if scoring else {}),
        "select_by": args.select_by,
        "averaged": averaged,
        "epochs_run": len(history),
        "steps": step,
        "stop_reason": stop_reason,
        "train_seconds": round(train_seconds),
        "threads": torch.get_num_threads(),
        "history": [{**asdict(r), "val_loss": loss_or_none(r.val_loss)} for r in history],
    }
    if "stages" in summary:  # this run is the folder's last stage
        this_run = {k: v for k, v in summary.items() if k not in (*NOT_A_STAGE, "history")}
        summary["stages"] = [*summary["stages"], this_run]
    # The saved best checkpoint gets the final training summary (history stays in the report).
    meta_path = args.output / META_FILENAME
    meta = GeneratorMeta.model_validate_json(meta_path.read_text(encoding="utf-8"))
    meta.training = {k: v for k, v in summary.items() if k != "history"}
    meta_path.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "training_metrics.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
    )
    plot_loss_curve(history, args.report / "loss_curve.png", f"{args.arch} ({args.base}): loss per token")
    logger.info(
        "best epoch %d (val %.4f); stopped by: %s, after %.1f min; saved %s",
        best_epoch,
        best_loss,
        stop_reason,
        train_seconds / 60,
        args.output,
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        summary = train(args)
    except (OSError, ValueError) as exc:
        logger.error("training failed: %s", exc)
        return 1
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k not in ("history", "holdout_object_names")},
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
