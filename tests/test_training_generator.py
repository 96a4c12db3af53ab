"""Generator training and evaluation end to end on tiny data and tiny models (offline, seconds).

Like transformers' example tests, the CLIs run in-process with ``sys.argv`` patched.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from inference.models.generators import CommentGenerator
from inference.models.registry import GenerationConfig, discover_generators
from inference.text.josa import attach_particle, replace_word
from inference.text.keywords import has_emotion
from inference.text.slots import SLOT_TOKENS
from training import distill_comments, evaluate_generator, select_decoding, split_spread, train_generator
from training.augment import (
    augment_pairs,
    common_syllables,
    swap_object_keywords,
    unseen_keyword_pairs,
)
from training.data import (
    DEFAULT_DATA,
    Pair,
    holdout_object_names,
    load_object_names,
    load_pairs,
    read_jsonl,
    split_pairs,
    write_jsonl,
)
from training.tokenizer import train_tokenizer

EMOTIONS = ("기쁨", "슬픔", "공포", "분노")
OBJECTS = ("안경", "나무", "자전거", "책", "모자", "고양이", "연필", "자동차")
EXTRA_NAMES = (
    "기타",
    "바이올린",
    "캥거루",
    "토스터",
    "헬리콥터",
    "파인애플",
    "해바라기",
    "우산",
    "시계",
    "사과",
)
TEMPLATES = (
    "{emotion_text} {obj}이 정말 멋져요! 😊",
    "{obj}과 함께한 순간이네요 ✨ {emotion_text}",
    "{emotion_text} 😢 {obj}을 보니 마음이 따뜻해져요 🌳",
    "와! {obj}이 눈에 띄네요 🎉 {emotion_text}",
)
EMOTION_TEXT = {
    "기쁨": "행복해 보여요!",
    "슬픔": "힘내세요…",
    "공포": "무서운 분위기네요!",
    "분노": "화가 나 보이네요!",
}
TINY_SIZE = ["--d-model", "32", "--d-ff", "64", "--heads", "2", "--layers", "1", "--decoder-layers", "1"]


def fixture_pairs(count: int = 48) -> list[Pair]:
    """Pairs shaped like the shared data: emotion + objects → comment with emojis and particles."""
    rng = random.Random(0)
    pairs = []
    for i in range(count):
        emotion = EMOTIONS[i % len(EMOTIONS)]
        obj = OBJECTS[(i * 3) % len(OBJECTS)]
        comment = TEMPLATES[i % len(TEMPLATES)].format(emotion_text=EMOTION_TEXT[emotion], obj=obj)
        comment = replace_word(comment, obj, obj)  # fixes 이/가, 과/와, 을/를 for the object
        keywords = f"{emotion}, {obj}" if i % 5 else emotion
        if not i % 5:
            comment = f"{EMOTION_TEXT[emotion]} {rng.choice(['😊', '😱', '💔'])}"
        pairs.append(Pair(keywords=keywords, comment=comment))
    return pairs


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("generator-data")
    data = folder / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"keywords": p.keywords, "comment": p.comment}, ensure_ascii=False) + "\n"
            for p in fixture_pairs()
        ),
        encoding="utf-8",
    )
    names = folder / "names.json"
    all_names = [*OBJECTS, *EXTRA_NAMES, "박쥐 (동물)"]
    names.write_text(
        json.dumps({str(i): n for i, n in enumerate(all_names)}, ensure_ascii=False), encoding="utf-8"
    )
    return data, names


def run_training(
    monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path], output: Path, *extra: str
) -> None:
    data, names = data_files
    argv = [
        "train_generator",
        "--data", str(data),
        "--object-names", str(names),
        "--output", str(output),
        "--val-size", "6",
        "--test-size", "6",
        "--holdout-names", "3",
        "--batch-size", "8",
        "--max-steps", "3",
        "--threads", "1",
        "--no-progress",
        *extra,
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert train_generator.main() == 0


def check_generator_folder(folder: Path, architecture: str) -> None:
    """The folder is what the bot loads: registry metadata + model + tokenizer that generate text."""
    entries = discover_generators(folder.parent)
    entry = entries[folder.name]
    assert entry.meta.architecture == architecture
    assert "{keywords}" in entry.meta.prompt_template
    training = entry.meta.training
    assert len(training["data_sha256"]) == 64
    assert training["params"] > 0
    assert training["split"]["validation"] == 6 and training["split"]["test"] == 6
    assert training["stop_reason"] == "max steps"
    assert len(training["holdout_object_names"]) == 3
    report = folder / "report"
    assert (report / "loss_curve.png").stat().st_size > 1000
    history = json.loads((report / "training_metrics.json").read_text())["history"]
    assert history and {"train_loss", "val_loss"} <= history[0].keys()
    assert len((report / "test.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    generator = CommentGenerator.load(entry, "cpu")  # the worker's own loader
    comments = generator.generate(["기쁨, 안경", "슬픔"], sample=False)
    assert len(comments) == 2 and all(isinstance(c, str) for c in comments)
    assert len(generator.generate(["공포, 책"], sample=True)) == 1


@pytest.mark.parametrize(("arch", "architecture"), [("t5", "seq2seq"), ("gpt2", "causal")])
def test_tiny_training_from_scratch(
    arch: str,
    architecture: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_files: tuple[Path, Path],
) -> None:
    output = tmp_path / "generators" / arch
    run_training(
        monkeypatch,
        data_files,
        output,
        "--arch",
        arch,
        "--base",
        "scratch",
        "--vocab-size",
        "400",
        *TINY_SIZE,
    )
    check_generator_folder(output, architecture)
    meta = json.loads((output / "generator.json").read_text(encoding="utf-8"))
    assert meta["training"]["base"] == "scratch"
    assert meta["training"]["hyperparameters"]["lr"] == train_generator.PRESETS["scratch"]["lr"]
    assert meta["training"]["split"]["augmented"] > 0  # keyword-swap augmentation was on
    # Partial-character tokens can never be generated, so no output can hold U+FFFD.
    suppressed = meta["generation"]["suppress_tokens"]
    assert suppressed == meta["eval_generation"]["suppress_tokens"]
    tokenizer = AutoTokenizer.from_pretrained(output, local_files_only=True)
    assert suppressed and all("\ufffd" in tokenizer.decode([i]) for i in suppressed)
    assert "\ufffd" not in tokenizer.decode(tokenizer("좋아요 😊")["input_ids"])


def make_local_base(folder: Path, arch: str, texts: list[str]) -> Path:
    """A tiny Hugging Face checkpoint folder, standing in for paust/pko-t5-base or skt/kogpt2-base-v2."""
    tokenizer = train_tokenizer(texts, vocab_size=300, append_eos=arch == "t5")
    if arch == "t5":
        config = T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
            pad_token_id=0, eos_token_id=1,
        )  # fmt: skip
        config.decoder_start_token_id = 0
        model: PreTrainedModel = T5ForConditionalGeneration(config)
    else:
        gpt_config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=128,
            n_embd=32,
            n_layer=1,
            n_head=2,
            eos_token_id=1,
            bos_token_id=1,
        )
        model = GPT2LMHeadModel(gpt_config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("arch", "architecture"), [("t5", "seq2seq"), ("gpt2", "causal")])
def test_tiny_fine_tune_from_local_checkpoint(
    arch: str,
    architecture: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_files: tuple[Path, Path],
) -> None:
    texts = [t for p in fixture_pairs() for t in (p.keywords, p.comment)]
    base = make_local_base(tmp_path / "base", arch, texts)
    output = tmp_path / "generators" / arch
    run_training(monkeypatch, data_files, output, "--arch", arch, "--base", str(base), "--lr", "1e-2")
    check_generator_folder(output, architecture)
    meta = json.loads((output / "generator.json").read_text(encoding="utf-8"))
    assert meta["training"]["base"] == str(base)
    assert meta["training"]["hyperparameters"]["warmup_steps"] == 500  # research "setting 1" preset
    assert meta["training"]["hyperparameters"]["dropout"] == 0.2
    assert "suppress_tokens" not in meta["generation"]  # a pretrained vocabulary may need fragments
    before, after = load_file(base / "model.safetensors"), load_file(output / "model.safetensors")
    changed = [name for name in before if name in after and not torch.equal(before[name], after[name])]
    assert changed, "fine-tuning did not update any weight"


@pytest.mark.parametrize("arch", ["t5", "gpt2"])
def test_smoothed_loss_is_the_model_loss_without_smoothing(arch: str, tmp_path: Path) -> None:
    """The hand-made loss (shifted by one for GPT-2) equals the model's own at a vanishing smoothing,
    and with smoothing ε it is (1 - ε) · NLL + ε · the mean NLL over the vocabulary."""
    texts = [t for p in fixture_pairs() for t in (p.keywords, p.comment)]
    base = make_local_base(tmp_path / "base", arch, texts)
    args = train_generator.parse_args(["--arch", arch, "--base", str(base)])
    tokenizer, model = train_generator.load_base(args)
    model.eval()
    examples = [train_generator.encode(pair, tokenizer, args) for pair in fixture_pairs(4)]
    inputs = train_generator.collate(examples, int(tokenizer.pad_token_id), arch == "t5")
    with torch.no_grad():
        plain = train_generator.training_loss(model, inputs, 0.0)
        assert torch.allclose(train_generator.training_loss(model, inputs, 1e-9), plain, atol=1e-5)
        logits, labels = model(**inputs).logits, inputs["labels"]
        if arch == "gpt2":  # token t predicts token t+1
            logits, labels = logits[:, :-1], labels[:, 1:]
        log_p, kept = logits.log_softmax(-1), labels != train_generator.IGNORE_INDEX
        nll = -log_p.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)[kept].mean()
        expected = 0.8 * nll + 0.2 * -log_p.mean(-1)[kept].mean()
        assert torch.allclose(train_generator.training_loss(model, inputs, 0.2), expected, atol=1e-5)


def test_checkpoint_mean_averages_floats_and_keeps_counters() -> None:
    first = {"w": torch.tensor([0.0, 2.0]), "steps": torch.tensor([3])}
    second = {"w": torch.tensor([2.0, 4.0]), "steps": torch.tensor([5])}
    mean = train_generator.mean_weights([first, second])
    assert torch.equal(mean["w"], torch.tensor([1.0, 3.0])) and torch.equal(mean["steps"], torch.tensor([5]))


def test_averaging_keeps_the_mean_only_when_validation_prefers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    snapshots = {
        epoch: {"weight": torch.tensor([[value]])} for epoch, value in [(1, 0.0), (2, 2.0), (3, 5.0)]
    }
    # Validation loss: distance of the weight from 1 (the mean of epochs 1 and 2 is perfect).
    monkeypatch.setattr(train_generator, "validation_loss", lambda m, *_: abs(m.weight.item() - 1.0))
    args = argparse.Namespace(average_last=2)
    with torch.no_grad():
        model.weight.fill_(2.0)  # training ended at epoch 2, the best one
    kept = train_generator.try_averages(model, snapshots, 2, 2, 1.0, [], args, 0)
    assert kept == {"epochs": [1, 2], "val_loss": 0.0} and model.weight.item() == 1.0
    with torch.no_grad():
        model.weight.fill_(5.0)  # epoch 3 was last; a perfect single epoch: no mean beats it
    assert train_generator.try_averages(model, snapshots, 2, 3, 0.0, [], args, 0) is None
    assert model.weight.item() == 5.0  # left as it was


def test_training_with_smoothing_and_checkpoint_averaging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    """Averaging is judged on validation loss: kept only when the mean beats every single epoch, and
    then the saved weights are that mean."""
    output = tmp_path / "generators" / "t5"
    run_training(
        monkeypatch, data_files, output, "--arch", "t5", "--base", "scratch", "--vocab-size", "400",
        *TINY_SIZE, "--max-steps", "0", "--epochs", "3", "--average-last", "3", "--label-smoothing", "0.1",
    )  # fmt: skip
    summary = json.loads((output / "report" / "training_metrics.json").read_text())
    meta = json.loads((output / "generator.json").read_text(encoding="utf-8"))["training"]
    assert summary["epochs_run"] == 3 and meta["hyperparameters"]["label_smoothing"] == 0.1
    best_single = min(epoch["val_loss"] for epoch in summary["history"])
    averaged = summary["averaged"]
    if averaged is None:
        assert summary["best_val_loss"] == round(best_single, 4)
    else:
        assert averaged["val_loss"] < best_single and len(averaged["epochs"]) > 1
        assert meta["averaged"] == averaged and meta["best_val_loss"] == averaged["val_loss"]
    generator = CommentGenerator.load(discover_generators(output.parent)["t5"], "cpu")
    assert len(generator.generate(["기쁨, 안경"], sample=False)) == 1


def decoding_base(tiny_trained_t5: Path, folder: Path) -> Path:
    """A copy of the tiny t5 whose generator.json carries decoding chosen "on validation"."""
    base = folder / "base"
    shutil.copytree(tiny_trained_t5 / "generators" / "t5", base)
    meta = json.loads((base / "generator.json").read_text(encoding="utf-8"))
    meta["eval_generation"] |= {"num_beams": 2, "pick": "consensus", "length_penalty": 1.5}
    meta["slot_end_penalty"] = 3.0
    (base / "generator.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return base


def test_checkpoints_chosen_by_decoded_validation_scores_with_the_base_decoding(
    tiny_trained_t5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    """--select-by scores decodes the validation split through the bot's loader every epoch (and the
    base first); --keep-base-decoding saves the base's decoding, which is also what was scored."""
    base = decoding_base(tiny_trained_t5, tmp_path)
    output = tmp_path / "generators" / "t5"
    run_training(
        monkeypatch, data_files, output, "--arch", "t5", "--base", str(base), "--lr", "1e-3",
        "--max-steps", "0", "--epochs", "2", "--select-by", "scores", "--keep-base-decoding",
    )  # fmt: skip
    saved = json.loads((output / "generator.json").read_text(encoding="utf-8"))
    base_meta = json.loads((base / "generator.json").read_text(encoding="utf-8"))
    assert saved["eval_generation"] == base_meta["eval_generation"] and saved["slot_end_penalty"] == 3.0
    summary = json.loads((output / "report" / "training_metrics.json").read_text())
    assert summary["select_by"] == "scores" and summary["epochs_run"] == 2
    per_epoch = [{"bleu4": e["val_bleu4"], "rougeL_f": e["val_rouge_l_f"]} for e in summary["history"]]
    scores = [summary["start_val_scores"], *per_epoch]
    assert all(0.0 <= s["bleu4"] <= 1.0 and 0.0 <= s["rougeL_f"] <= 1.0 for s in scores)
    totals = [s["bleu4"] + s["rougeL_f"] for s in scores]
    assert summary["best_epoch"] == totals.index(max(totals))
    assert saved["training"]["best_val_scores"] == scores[summary["best_epoch"]]
    # The folder's history: the run that made the base, then this one.
    stages = saved["training"]["stages"]
    assert [stage["base"] for stage in stages] == ["scratch", str(base)]
    assert stages[1]["best_epoch"] == summary["best_epoch"] and "stages" not in stages[1]


@pytest.mark.parametrize(
    ("totals", "best_epoch"),
    [([0.30, 0.20, 0.50, 0.40], 2), ([0.30, 0.10, 0.20, 0.29], 0)],
    ids=["an epoch beats the base", "the base stays"],
)
def test_selection_by_scores_keeps_the_best_checkpoint_or_the_base(
    totals: list[float],
    best_epoch: int,
    tiny_trained_t5: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_files: tuple[Path, Path],
) -> None:
    base = decoding_base(tiny_trained_t5, tmp_path)
    found = iter(totals)
    monkeypatch.setattr(
        train_generator, "validation_scores", lambda *args, **kwargs: {"bleu4": next(found), "rougeL_f": 0.0}
    )
    output = tmp_path / "generators" / "t5"
    run_training(
        monkeypatch, data_files, output, "--arch", "t5", "--base", str(base), "--lr", "1e-2",
        "--max-steps", "0", "--epochs", "3", "--select-by", "scores", "--patience", "5",
    )  # fmt: skip
    training = json.loads((output / "generator.json").read_text(encoding="utf-8"))["training"]
    assert training["best_epoch"] == best_epoch
    assert training["best_val_scores"]["bleu4"] == totals[best_epoch]
    before, after = load_file(base / "model.safetensors"), load_file(output / "model.safetensors")
    same = all(torch.equal(before[name], after[name]) for name in before)
    assert same == (best_epoch == 0)  # the base's own weights when no epoch beat them


@pytest.mark.parametrize(
    "extra",
    [
        ["--base", "scratch", "--keep-base-decoding"],
        ["--base", "scratch", "--select-by", "scores", "--average-last", "3"],
        ["--base", "scratch", "--val-size", "0", "--select-by", "scores"],
    ],
    ids=["no base decoding to keep", "averaging is judged on loss", "no validation to score"],
)
def test_training_options_that_cannot_combine_are_refused(extra: list[str]) -> None:
    with pytest.raises(SystemExit):
        train_generator.parse_args(["--arch", "t5", *extra])


@pytest.mark.parametrize("arch", ["t5", "gpt2"])
def test_tiny_fine_tune_with_object_slots(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    """--object-slots: slot tokens join the vocabulary, the targets hold them, the bot's loader uses them."""
    texts = [t for p in fixture_pairs() for t in (p.keywords, p.comment)]
    base = make_local_base(tmp_path / "base", arch, texts)
    output = tmp_path / "generators" / arch
    run_training(
        monkeypatch, data_files, output, "--arch", arch, "--base", str(base), "--lr", "1e-2", "--object-slots"
    )
    meta = json.loads((output / "generator.json").read_text(encoding="utf-8"))
    assert meta["object_slots"] is True and meta["training"]["object_slots"] is True
    tokenizer = AutoTokenizer.from_pretrained(output, local_files_only=True)
    for token in SLOT_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    text = "<obj1>가 멋지고 <obj2>와 함께 😊"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    weights = load_file(output / "model.safetensors")
    assert max(t.shape[0] for t in weights.values() if t.ndim == 2) >= len(tokenizer)  # embeddings resized
    generator = CommentGenerator.load(discover_generators(output.parent)[arch], "cpu")
    assert generator.prompts(["기쁨, 안경, 나무"]) == [
        generator.meta.prompt("기쁨, 안경 <obj1>, 나무 <obj2>")
    ]
    assert len(generator.generate(["기쁨, 안경", "슬픔"], sample=False)) == 2


@pytest.mark.parametrize("arch", ["t5", "gpt2"])
def test_slot_tokens_start_as_distinct_embeddings(arch: str, tmp_path: Path) -> None:
    """Not all at the mean (transformers' default), or <obj1> and <obj2> start out the same."""
    texts = [t for p in fixture_pairs() for t in (p.keywords, p.comment)]
    base = make_local_base(tmp_path / "base", arch, texts)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = (T5ForConditionalGeneration if arch == "t5" else GPT2LMHeadModel).from_pretrained(base)
    old_size = len(tokenizer)
    assert train_generator.add_slot_tokens(tokenizer, model) == len(SLOT_TOKENS)
    assert train_generator.add_slot_tokens(tokenizer, model) == 0  # idempotent: a slot folder as --base
    weight = model.get_input_embeddings().weight.detach()
    assert weight.shape[0] == old_size + len(SLOT_TOKENS)
    new_rows, old_rows = weight[old_size:], weight[:old_size]
    typical = torch.cdist(old_rows[:50], old_rows[:50]).mean()
    assert torch.pdist(new_rows).min() > 0.3 * typical


def test_training_form_of_a_pair_with_slots() -> None:
    pair = Pair(keywords="기쁨, 안경, 나무", comment="안경이 잘 어울려요! 😄")
    slotted = train_generator.with_slots(pair)
    assert slotted == Pair(keywords="기쁨, 안경 <obj1>, 나무", comment="<obj1>가 잘 어울려요! 😄")


def test_training_reports_a_bad_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"keywords": "기쁨"}\n', encoding="utf-8")
    monkeypatch.setattr(
        sys,
        "argv",
        ["train_generator", "--arch", "t5", "--data", str(bad), "--output", str(tmp_path / "out")],
    )
    assert train_generator.main() == 1
    assert not (tmp_path / "out").exists()


# --- evaluation CLI ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_trained_t5(tmp_path_factory: pytest.TempPathFactory, data_files: tuple[Path, Path]) -> Path:
    weights = tmp_path_factory.mktemp("eval-weights")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_training(
            monkeypatch,
            data_files,
            weights / "generators" / "t5",
            "--arch",
            "t5",
            "--vocab-size",
            "400",
            *TINY_SIZE,
        )
    return weights


def test_evaluation_cli(
    tiny_trained_t5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    test_file = tiny_trained_t5 / "generators" / "t5" / "report" / "test.jsonl"
    predictions, report = tmp_path / "pred.jsonl", tmp_path / "report"
    argv = [
        "evaluate_generator", "--generator", "T5", "--data", str(test_file),
        "--weights-dir", str(tiny_trained_t5), "--predictions", str(predictions), "--report", str(report),
        "--latency-runs", "2", "--sampled-runs", "4", "--samples-per-input", "3", "--threads", "1",
        "--update-metadata",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert evaluate_generator.main() == 0

    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    test_rows = [json.loads(line) for line in test_file.read_text(encoding="utf-8").splitlines()]
    assert [r["keywords"] for r in rows] == [r["keywords"] for r in test_rows]
    assert [r["reference"] for r in rows] == [r["comment"] for r in test_rows]
    assert all(isinstance(r["prediction"], str) for r in rows)
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    expected_keys = {
        *("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge1_f", "rouge2_f", "rougeL_f"),
        *("emoji_share", "keyword_coverage", "distinct_share", "garbled", "sampled_garbled"),
        *("latency_p50_ms_batch1", "latency_p50_ms_batch16"),
        *("latency_p50_ms_batch1_sampled", "latency_p50_ms_batch16_sampled"),
        *(
            "sampled_bleu4",
            "sampled_distinct_per_input",
            "sampled_differs_on_rerun",
            "sampled_keyword_coverage",
        ),
        *("bleu4_ci95_low", "bleu4_ci95_high", "rougeL_f_ci95_low", "rougeL_f_ci95_high"),
    }
    assert expected_keys <= metrics.keys()
    assert metrics["sampled_count"] == 3 * 4  # three comments for each of the first four inputs
    assert metrics["bleu4_ci95_low"] <= metrics["bleu4_ci95_high"]
    assert metrics["count"] == len(rows)
    assert metrics["latency_p50_ms_batch1"] > 0
    if "keyword_coverage_unseen" in metrics:
        unseen = predictions.with_name("pred_unseen.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(unseen) == metrics["keyword_inputs_unseen"]
    table = capsys.readouterr().out
    assert "research pko-t5-base" in table and "0.4105" in table
    stored = json.loads(
        (tiny_trained_t5 / "generators" / "t5" / "generator.json").read_text(encoding="utf-8")
    )
    assert stored["training"]["metrics"]["count"] == len(rows)


def test_evaluation_cli_unknown_generator(
    tiny_trained_t5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"keywords": "기쁨", "comment": "좋아요 😊"}\n', encoding="utf-8")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "evaluate_generator",
            "--generator",
            "nope",
            "--data",
            str(data),
            "--weights-dir",
            str(tiny_trained_t5),
        ],
    )
    assert evaluate_generator.main() == 1


# --- data, tokenizer, augmentation ---------------------------------------------------------------------
def test_split_is_deterministic_and_disjoint() -> None:
    pairs = fixture_pairs()
    first = split_pairs(pairs, seed=3, validation=5, test=0.25)
    again = split_pairs(pairs, seed=3, validation=5, test=0.25)
    other = split_pairs(pairs, seed=4, validation=5, test=0.25)
    assert first == again and first.test != other.test
    assert first.sizes() == {"train": 31, "validation": 5, "test": 12}
    assert len({*map(id, first.train), *map(id, first.validation), *map(id, first.test)}) == len(pairs)


def emoji_chars(texts: list[str]) -> set[str]:
    return {c for t in texts for c in t if unicodedata.category(c) == "So"}


def check_round_trip(texts: list[str], vocab_size: int) -> None:
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, append_eos=True)
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    for emoji in emoji_chars(texts):
        assert (
            tokenizer.decode(tokenizer(f"좋아요 {emoji}")["input_ids"], skip_special_tokens=True)
            == f"좋아요 {emoji}"
        )
    # Byte-level: even text the tokenizer never saw round-trips without unknown tokens.
    unseen = "캥거루 헬리콥터 🦘🚁 뷁"
    assert tokenizer.decode(tokenizer(unseen)["input_ids"], skip_special_tokens=True) == unseen


def test_tokenizer_round_trips_hangul_and_emoji_on_fixture() -> None:
    check_round_trip([t for p in fixture_pairs() for t in (p.keywords, p.comment)], vocab_size=400)


@pytest.mark.skipif(
    not DEFAULT_DATA.is_file(), reason="shared data not present (fixture test covers the code)"
)
def test_tokenizer_round_trips_every_pair_of_the_shared_data() -> None:
    pairs = load_pairs(DEFAULT_DATA)
    texts = [t for p in pairs for t in (p.keywords, p.comment)]
    check_round_trip(texts, vocab_size=4000)
    tokenizer = train_tokenizer(texts, vocab_size=4000, append_eos=False)
    # Frequent emojis and common words are single tokens, which keeps sequences short.
    assert len(tokenizer.tokenize(" 😊")) == 1
    assert len(tokenizer.tokenize(" 안경")) == 1


@pytest.mark.parametrize(
    ("word", "particle", "expected"),
    [
        ("모자", "이", "모자가"),
        ("책", "가", "책이"),
        ("모자", "을", "모자를"),
        ("책", "를", "책을"),
        ("모자", "은", "모자는"),
        ("책", "는", "책은"),
        ("모자", "과", "모자와"),
        ("책", "와", "책과"),
        ("모자", "으로", "모자로"),
        ("책", "로", "책으로"),
        ("연필", "으로", "연필로"),  # ㄹ-final takes 로
        ("모자", "이에요", "모자예요"),
        ("책", "예요", "책이에요"),
        ("TV", "이", "TV가"),  # no Hangul ending: vowel form
    ],
)
def test_attach_particle_follows_batchim(word: str, particle: str, expected: str) -> None:
    assert attach_particle(word, particle) == expected


def test_replace_word_fixes_particles_and_respects_word_boundaries() -> None:
    text = "안경이 멋져요! 안경을 쓰고 안경과 함께 안경에서 안경들이 반짝 😊"
    assert (
        replace_word(text, "안경", "모자")
        == "모자가 멋져요! 모자를 쓰고 모자와 함께 모자에서 모자들이 반짝 😊"
    )
    assert replace_word("차분한 차에서 쉬어요", "차", "자전거") == "차분한 자전거에서 쉬어요"


def test_swap_object_keywords_changes_keywords_and_comment_together() -> None:
    pair = Pair("기쁨, 안경, 나무", "안경이 정말 멋지네요! 😊 즐거운 하루 되세요")
    swapped = swap_object_keywords(pair, ["사과"], random.Random(0))
    # "나무" is not in the comment: only the mentioned keyword is swapped.
    assert swapped == Pair("기쁨, 사과, 나무", "사과가 정말 멋지네요! 😊 즐거운 하루 되세요")
    assert swap_object_keywords(Pair("슬픔", "힘내세요 😢"), ["사과"], random.Random(0)) is None
    # A keyword that only occurs inside another word ("차" in "차분한") is not swapped.
    assert swap_object_keywords(Pair("기쁨, 차", "차분한 분위기 😊"), ["사과"], random.Random(0)) is None


def test_augment_pairs_and_unseen_pairs_use_disjoint_names(data_files: tuple[Path, Path]) -> None:
    _, names_file = data_files
    names = load_object_names(names_file)
    assert "박쥐 (동물)" not in names  # translation notes are not object names
    pairs = fixture_pairs()
    holdout = holdout_object_names(names, pairs, count=3, seed=0)
    assert len(holdout) == 3 and not set(holdout) & set(OBJECTS)
    pool = [n for n in names if n not in holdout]
    augmented = augment_pairs(pairs, pool, copies=2, seed=0)
    assert len(augmented) == 2 * sum(1 for p in pairs if p.object_keywords)
    for pair in augmented:
        objects = pair.object_keywords
        assert objects and all(o in pool for o in objects) and all(o not in holdout for o in objects)
        assert all(o in pair.comment for o in objects)
    unseen = unseen_keyword_pairs(pairs, holdout, seed=0)
    assert unseen and all(set(p.object_keywords) <= set(holdout) for p in unseen)


def test_synthetic_names_teach_copying_of_any_syllables() -> None:
    syllables = common_syllables()
    assert len(syllables) == 2350 and "가" in syllables and "뷁" not in syllables
    pairs = [p for p in fixture_pairs() if p.object_keywords]
    augmented = augment_pairs(pairs, ["사과"], copies=4, seed=1, synthetic_share=0.5)
    made_up = [p for p in augmented if p.object_keywords != ["사과"]]
    assert 0.3 * len(augmented) < len(made_up) < 0.7 * len(augmented)
    for pair in made_up:
        name = pair.object_keywords[0]
        assert name in pair.comment and name not in OBJECTS
        assert all(char in syllables for char in name.replace(" ", ""))


def test_decoding_selection_cli(
    tiny_trained_t5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_trained_t5, weights)
    folder = weights / "generators" / "t5"
    report = tmp_path / "selection"
    argv = [
        "select_decoding", "--generator", "t5", "--weights-dir", str(weights), "--limit", "6",
        "--beams", "2", "--sample-candidates", "2", "--draws", "2", "--threads", "1",
        "--report", str(report), "--update-metadata",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert select_decoding.main() == 0

    found = json.loads((report / "decoding_selection.json").read_text(encoding="utf-8"))
    assert found["data"].endswith("validation.jsonl")  # chosen on validation, never on test
    labels = [trial["label"] for trial in found["eval_generation"]]
    assert labels[0] == "current" and [label.split(", length")[0] for label in labels[1:]] == [
        "beams 2, first",
        "beams 2, consensus",
    ]
    for trial in found["eval_generation"][1:] + found["generation"][1:]:
        assert {"bleu4", "rougeL_f", "bleu4_ci95", "keyword_coverage", "garbled"} <= trial.keys()
        assert set(trial["vs_current"]) == {"bleu4", "rougeL_f"}
    assert all("differs_on_rerun" in trial for trial in found["generation"])
    meta = json.loads((folder / "generator.json").read_text(encoding="utf-8"))
    chosen = next(t for t in found["eval_generation"] if t["label"] == found["eval_generation_chosen"])
    assert meta["eval_generation"] == chosen["config"]
    assert meta["training"]["decoding_selection"]["eval_generation"] == found["eval_generation_chosen"]
    assert "(chosen)" in (report / "decoding_eval_generation.md").read_text(encoding="utf-8")
    assert "(chosen)" in (report / "decoding_generation.md").read_text(encoding="utf-8")


def test_decoding_selection_tries_each_stop_rule_of_beam_search() -> None:
    """--early-stopping adds beam search's stop rule to the grid: every other rule is a trial, the current
    one is not tried twice, and greedy search (no beams to stop) gets no stop rule."""
    current = GenerationConfig(
        do_sample=False, num_beams=4, pick="consensus", length_penalty=1.5, early_stopping=True
    )
    args = select_decoding.parse_args(
        [
            "--generator",
            "t5",
            "--beams",
            "1,4",
            "--picks",
            "first,consensus",
            "--early-stopping",
            "true,false",
        ]
    )
    trials = select_decoding.deterministic_trials(current, args)
    labels = [trial.label for trial in trials]
    assert labels == [
        "current",
        "beams 1, first",
        "beams 4, first, length penalty 1.5, early stopping true",
        "beams 4, first, length penalty 1.5, early stopping false",
        "beams 4, consensus, length penalty 1.5, early stopping false",
    ]
    assert trials[-1].config.model_dump()["early_stopping"] is False
    with pytest.raises(SystemExit, match="early-stopping"):
        select_decoding.deterministic_trials(
            current, select_decoding.parse_args(["--generator", "t5", "--early-stopping", "yes"])
        )


def test_decoding_selection_tries_a_second_search_with_each_stronger_nudge() -> None:
    """--redraw-penalties adds the second beam search (where no beam names every object) to the grid;
    ``off`` is the plain search, and the current setting is not tried twice."""
    current = GenerationConfig(
        do_sample=False, num_beams=4, pick="consensus", length_penalty=1.0, early_stopping=False
    )
    argv = ["--generator", "t5", "--beams", "4", "--picks", "consensus", "--redraw-penalties", "off,12,20"]
    trials = select_decoding.deterministic_trials(current, select_decoding.parse_args(argv))
    assert [trial.label.split("early stopping false")[-1] for trial in trials] == [
        "current",
        ", again at slot-end penalty 12.0",
        ", again at slot-end penalty 20.0",
    ]
    chosen = trials[1].config
    assert chosen.redraw_incomplete and chosen.redraw_end_penalty == 12.0
    assert "redraw_end_penalty" not in chosen.generate_arguments()
    kept = select_decoding.deterministic_trials(chosen, select_decoding.parse_args(argv[:6]))
    assert len(kept) == 1 and kept[0].config.redraw_end_penalty == 12.0  # the default: the current one
    with pytest.raises(SystemExit, match="redraw-penalties"):
        select_decoding.deterministic_trials(
            current, select_decoding.parse_args([*argv[:6], "--redraw-penalties", "x"])
        )


def test_init_seed_changes_the_weights_not_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    """Runs that differ only in --init-seed train on the same split (the training-seed spread is measured on
    the same test pairs) from different weights; generator.json records the seed."""
    folders = []
    for init_seed in ("1", "2"):
        output = tmp_path / f"seed{init_seed}" / "t5"
        run_training(
            monkeypatch, data_files, output, "--arch", "t5", "--base", "scratch", "--vocab-size", "400",
            *TINY_SIZE, "--init-seed", init_seed,
        )  # fmt: skip
        folders.append(output)
    first, second = (
        json.loads((f / "generator.json").read_text(encoding="utf-8"))["training"] for f in folders
    )
    assert (first["init_seed"], second["init_seed"]) == (1, 2) and first["split"] == second["split"]
    for name in ("test.jsonl", "validation.jsonl"):
        assert (folders[0] / "report" / name).read_bytes() == (folders[1] / "report" / name).read_bytes()
    weights = [(f / "model.safetensors").read_bytes() for f in folders]
    assert weights[0] != weights[1]


def test_training_on_train_and_validation_keeps_the_test_split_and_the_last_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    """--val-size 0 moves the validation pairs into training (the test pairs stay the same) and keeps the
    last epoch; --stop-after ends the --epochs schedule at the epoch an earlier run with validation chose."""
    folders = {}
    for val_size in ("6", "0"):
        output = tmp_path / f"val{val_size}" / "t5"
        run_training(
            monkeypatch, data_files, output, "--arch", "t5", "--base", "scratch", "--vocab-size", "400",
            *TINY_SIZE, "--max-steps", "0", "--epochs", "3", "--stop-after", "2", "--val-size", val_size,
        )  # fmt: skip
        folders[val_size] = output
    with_val, fit_all = (
        json.loads((folders[v] / "report" / "training_metrics.json").read_text()) for v in ("6", "0")
    )
    assert fit_all["split"]["train"] == with_val["split"]["train"] + 6 and fit_all["split"]["validation"] == 0
    test_files = [(folders[v] / "report" / "test.jsonl").read_text(encoding="utf-8") for v in ("6", "0")]
    same_pairs = [[json.loads(line)["comment"] for line in text.splitlines()] for text in test_files]
    assert same_pairs[0] == same_pairs[1]
    assert fit_all["epochs_run"] == 2 and fit_all["stop_reason"] == "stop after"
    assert fit_all["best_epoch"] == 2 and fit_all["best_val_loss"] is None
    assert all(epoch["val_loss"] is None for epoch in fit_all["history"])
    meta = json.loads((folders["0"] / "generator.json").read_text(encoding="utf-8"))["training"]
    assert meta["best_epoch"] == 2
    generator = CommentGenerator.load(discover_generators(folders["0"].parent)["t5"], "cpu")
    assert len(generator.generate(["기쁨, 안경"], sample=False)) == 1


# --- teacher comments (training.distill_comments) and --extra-pairs -------------------------------------
def test_teacher_picks_keep_the_promises_of_a_comment() -> None:
    """Only candidates with every object and an emoji count; closest follows the reference, consensus the
    other candidates; a pair with no usable candidate is left out."""
    row = {
        "keywords": "기쁨, 안경",
        "reference": "안경이 잘 어울리는 밝은 미소네요! 😊",
        "candidates": [
            {"comment": "안경이 잘 어울리는 미소네요! 😊"},
            {"comment": "행복해 보이시네요! 😊"},  # no 안경
            {"comment": "안경이 잘 어울리는 밝은 미소네요"},  # no emoji
            {"comment": "정말 행복해 보여요! 안경이 멋져요 😄"},
            {"comment": "정말 행복해 보여요! 안경이 멋지네요 😄"},
            {"comment": "정말 행복해 보여요! 안경이 멋져요 😄"},  # the same twice counts once
        ],
    }
    assert distill_comments.pick(row, "closest") == "안경이 잘 어울리는 미소네요! 😊"
    assert distill_comments.pick(row, "consensus") in {
        "정말 행복해 보여요! 안경이 멋져요 😄",
        "정말 행복해 보여요! 안경이 멋지네요 😄",
    }
    unusable = {**row, "candidates": [{"comment": "행복해 보이시네요! 😊"}]}
    assert distill_comments.pick(unusable, "closest") is None
    closest = {**row, "comment": "안경이 잘 어울리는 미소네요! 😊"}
    del closest["candidates"]
    assert distill_comments.picked_rows([unusable, row], "closest") == [closest]


def test_teacher_comments_come_from_the_training_split_and_resume(
    tiny_trained_t5: Path, tmp_path: Path, data_files: tuple[Path, Path]
) -> None:
    """The real generation path writes each training pair's candidates once (a second run adds none), and
    every pick is made from a training pair, so train_generator accepts the file."""
    data, _ = data_files
    out = tmp_path / "distill"
    argv = [
        "--out", str(out), "--data", str(data), "--weights-dir", str(tiny_trained_t5), "--generators", "t5",
        "--val-size", "6", "--test-size", "6", "--limit", "5", "--draws", "1", "--batch-size", "2",
        "--threads", "1",
    ]  # fmt: skip
    distill_comments.main(argv)
    distill_comments.main(argv)
    rows = read_jsonl(out / distill_comments.CANDIDATES_FILE)
    train = split_pairs(load_pairs(data), seed=42, validation=6, test=6).train
    assert [(r["keywords"], r["reference"]) for r in rows] == [(p.keywords, p.comment) for p in train[:5]]
    assert all([c["sampled"] for c in r["candidates"]] == ["False", "True"] for r in rows)
    for how in distill_comments.PICKS:
        picked = (out / f"{how}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(picked) == len(distill_comments.picked_rows(rows, how))
        train_generator.extra_training_pairs(out / f"{how}.jsonl", train)  # raises if not from training


def test_extra_pairs_join_training_and_are_refused_from_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    data, _ = data_files
    split = split_pairs(load_pairs(data), seed=42, validation=6, test=6)
    teacher = [
        {"keywords": p.keywords, "comment": f"{p.comment} 정말 좋아요!", "reference": p.comment}
        for p in split.train[:4]
    ]
    extra = tmp_path / "extra.jsonl"
    write_jsonl(extra, teacher)
    output = tmp_path / "generators" / "t5"
    run_training(
        monkeypatch, data_files, output, "--arch", "t5", "--vocab-size", "400", *TINY_SIZE,
        "--extra-pairs", str(extra),
    )  # fmt: skip
    record = json.loads((output / "generator.json").read_text(encoding="utf-8"))["training"]
    assert record["extra_pairs"]["pairs"] == 4 and len(record["extra_pairs"]["sha256"]) == 64
    leaked = next(p for p in split.validation if p not in set(split.train))
    leaked_row = {"keywords": leaked.keywords, "comment": "좋아요 😊", "reference": leaked.comment}
    write_jsonl(extra, [*teacher, leaked_row])
    with pytest.raises(ValueError, match=r"extra\.jsonl:5: not made from a training pair"):
        train_generator.extra_training_pairs(extra, split.train)


def test_faceless_pairs_come_from_the_training_split_and_mark_the_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    """--faceless: comments cut from training pairs only join training, and generator.json says the
    bot may ask the model for photos without a face emotion."""
    data, names = data_files
    args = train_generator.parse_args(
        ["--arch", "t5", "--data", str(data), "--object-names", str(names), "--val-size", "6",
         "--test-size", "6", "--augment-copies", "0", "--faceless"]
    )  # fmt: skip
    split, added, _ = train_generator.prepare_data(args)
    assert added and all(not has_emotion(p.keyword_list) for p in added)
    assert all(any(p.comment in t.comment for t in split.train) for p in added)
    output = tmp_path / "generators" / "t5"
    run_training(
        monkeypatch, data_files, output, "--arch", "t5", "--vocab-size", "400", *TINY_SIZE,
        "--object-slots", "--faceless",
    )  # fmt: skip
    meta = json.loads((output / "generator.json").read_text(encoding="utf-8"))
    assert meta["faceless"] is True and meta["training"]["augmentation"]["faceless"] is True
    assert discover_generators(output.parent)["t5"].meta.faceless
    continued = tmp_path / "continued" / "t5"  # a later stage without --faceless keeps what it learned
    run_training(monkeypatch, data_files, continued, "--arch", "t5", "--base", str(output), "--object-slots")
    assert json.loads((continued / "generator.json").read_text(encoding="utf-8"))["faceless"] is True


def test_split_spread_scores_each_training_on_its_own_split(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two tiny trainings on two splits, each scored on its own test pairs; mean and sd across them."""
    folders = [tmp_path / "generators" / f"split{seed}" for seed in (1, 2)]
    for seed, folder in zip((1, 2), folders, strict=True):
        run_training(
            monkeypatch,
            data_files,
            folder,
            "--arch",
            "t5",
            "--vocab-size",
            "400",
            *TINY_SIZE,
            "--seed",
            str(seed),
        )
    tests = [(folder / "report" / "test.jsonl").read_text(encoding="utf-8") for folder in folders]
    assert tests[0] != tests[1]  # another split
    out = tmp_path / "spread.json"
    assert split_spread.main([*map(str, folders), "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [fold["split_seed"] for fold in report["folds"]] == [1, 2]
    assert all(fold["pairs"] == 6 for fold in report["folds"])
    for name in ("bleu4", "rougeL_f"):
        values = [fold[name] for fold in report["folds"]]
        summary = report["summary"][name]
        assert summary["mean"] == pytest.approx(sum(values) / 2)
        assert summary["sd"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert "| mean |" in capsys.readouterr().out
