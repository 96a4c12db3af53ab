"""Comment generators with real (tiny, random) transformers models: registry, batching, post-check,
retry and the template fallback."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.pytorch_utils import Conv1D

from inference.errors import UnknownGeneratorError
from inference.models.generators import (
    CausalGenerator,
    CommentGenerator,
    DrawToken,
    GeneratorSet,
    Seq2SeqGenerator,
    _conv1d_as_linear,
    comment_problem,
)
from inference.models.registry import discover_generators
from inference.text.choice import has_emoji
from inference.text.slots import SlottedKeywords
from inference.text.templates import reads_feeling, template_comment

HANGUL_ONLY = re.compile(r"^ ?[\uac00-\ud7a3][\uac00-\ud7a3 ]*$")  # at least one syllable


@pytest.fixture(scope="module")
def generators(tiny_weights_dir: Path) -> GeneratorSet:
    return GeneratorSet.from_dir(tiny_weights_dir / "generators", "cpu", default="t5")


def copy_generator(source: Path, target: Path, **meta_changes: Any) -> Path:
    """A drop-in generator folder: a copy of ``source`` with ``generator.json`` fields changed."""
    shutil.copytree(source, target)
    meta_file = target / "generator.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    for key, value in meta_changes.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key].update(value)
        else:
            meta[key] = value
    meta_file.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return target


def token_ids(generator: CommentGenerator, hangul: bool) -> list[int]:
    """Ids of vocabulary tokens that decode to pure Hangul text (``hangul=True``) or all others."""
    vocab_size = len(generator.tokenizer)
    pure = {i for i in range(vocab_size) if HANGUL_ONLY.match(str(generator.tokenizer.decode([i])))}
    return sorted(pure) if hangul else sorted(set(range(vocab_size)) - pure)


def test_registry_loads_every_generator_folder(generators: GeneratorSet) -> None:
    assert generators.names() == ["gpt2", "t5"]
    assert isinstance(generators.generators["t5"], Seq2SeqGenerator)
    assert isinstance(generators.generators["gpt2"], CausalGenerator)
    assert generators.resolve(None) == "t5"
    assert generators.resolve("GPT2") == "gpt2"


def test_unknown_generator_lists_the_available_ones(generators: GeneratorSet) -> None:
    with pytest.raises(UnknownGeneratorError) as caught:
        generators.resolve("kogpt")
    assert caught.value.available == ("gpt2", "t5")
    assert "gpt2, t5" in caught.value.user_message
    assert "kogpt" in caught.value.user_message


def test_missing_default_falls_back_to_an_existing_generator(tiny_weights_dir: Path) -> None:
    generators = GeneratorSet.from_dir(tiny_weights_dir / "generators", "cpu", default="nope")
    assert generators.default in generators.names()


def test_drop_in_folder_adds_a_generator_and_broken_ones_are_skipped(
    tiny_weights_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "generators"
    shutil.copytree(tiny_weights_dir / "generators", folder)
    copy_generator(folder / "t5", folder / "t5-friendly", description="drop-in")
    broken_meta = copy_generator(folder / "gpt2", folder / "broken-meta")
    (broken_meta / "generator.json").write_text("{not json", encoding="utf-8")
    missing_model = copy_generator(folder / "gpt2", folder / "no-model")
    (missing_model / "model.safetensors").unlink()
    (missing_model / "config.json").unlink()

    generators = GeneratorSet.from_dir(folder, "cpu", default="t5")
    assert generators.names() == ["gpt2", "t5", "t5-friendly"]
    comments = generators.comments("t5-friendly", [["기쁨", "안경"]], sample=False)
    assert len(comments) == 1 and comments[0].text


def test_no_generators_is_a_clear_startup_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generator"):
        GeneratorSet.from_dir(tmp_path, "cpu", default="t5")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("멋져요 \ufffd", "broken characters (U+FFFD)"),
        ("So nice! 😊", "no Hangul"),
        ("기쁨, 안경", "echo of the prompt/keywords"),
        ("기쁨 안경!! 😊", "echo of the prompt/keywords"),
        ("안경이 정말 잘 어울려요! 😊", None),
    ],
)
def test_post_check(text: str, problem: str | None) -> None:
    assert comment_problem(text, ["기쁨", "안경"]) == problem


def test_post_check_catches_an_echoed_prompt_template() -> None:
    prompt = "키워드: 기쁨, 안경\n댓글:"
    assert comment_problem("키워드: 기쁨, 안경 댓글:", ["기쁨", "안경"], prompt) is not None


def test_garbage_output_is_retried_once_then_replaced_by_a_template(
    generators: GeneratorSet, tiny_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator that cannot write Hangul (all Hangul tokens suppressed) always fails the check."""
    probe = generators.generators["gpt2"]
    no_hangul = {"suppress_tokens": token_ids(probe, hangul=True), "max_new_tokens": 8}
    folder = tmp_path / "generators"
    copy_generator(
        tiny_weights_dir / "generators" / "gpt2",
        folder / "mute",
        generation=no_hangul,
        eval_generation=no_hangul,
    )
    garbage = GeneratorSet.from_dir(folder, "cpu", default="mute")
    mute = garbage.generators["mute"]
    calls: list[tuple[int, bool]] = []
    real_generate = mute.generate

    def recording_generate(texts: list[str], sample: bool) -> list[str]:
        outputs = real_generate(texts, sample)
        assert all(comment_problem(out, []) is not None for out in outputs)
        calls.append((len(texts), sample))
        return outputs

    monkeypatch.setattr(mute, "generate", recording_generate)
    comments = garbage.comments("mute", [["기쁨", "안경"], ["슬픔", "나무"]], sample=False)

    assert calls == [(2, False), (2, True)]  # one batched try, one sampled retry of the failures
    assert [c.fallback for c in comments] == [True, True]
    assert "안경이 정말 멋져요" in comments[0].text
    assert "나무가 정말 멋져요" in comments[1].text
    assert all(comment_problem(c.text, []) is None for c in comments)


@pytest.mark.parametrize("name", ["t5", "gpt2"])
def test_valid_model_output_is_returned_as_is(
    name: str, generators: GeneratorSet, tiny_weights_dir: Path, tmp_path: Path
) -> None:
    """Restricting the random model to Hangul tokens makes its greedy output pass the check."""
    probe = generators.generators[name]
    hangul_only = {
        "suppress_tokens": token_ids(probe, hangul=False),
        "max_new_tokens": 6,
        "do_sample": False,
        "num_beams": 1,
    }
    folder = tmp_path / "generators"
    copy_generator(
        tiny_weights_dir / "generators" / name,
        folder / name,
        generation=hangul_only,
        eval_generation=hangul_only,
    )
    constrained = GeneratorSet.from_dir(folder, "cpu", default=name)
    raw = constrained.generators[name].generate(["기쁨, 안경"], sample=False)
    comments = constrained.comments(name, [["기쁨", "안경"]], sample=False)
    assert comments[0].fallback is False
    assert comments[0].text == raw[0]
    words, emoji = comments[0].text.rsplit(" ", 1)  # the model wrote no emoji: one was added
    assert HANGUL_ONLY.match(words) and has_emoji(emoji)


@pytest.mark.parametrize("name", ["t5", "gpt2"])
def test_batched_generation_matches_one_by_one(name: str, generators: GeneratorSet) -> None:
    """Padding (left padding for GPT-2) must not change what the model writes for a prompt."""
    generator = generators.generators[name]
    prompts = ["기쁨", "슬픔, 고양이, 꽃, 하늘", "공포, 자동차"]
    batched = generator.generate(prompts, sample=False)
    single = [generator.generate([p], sample=False)[0] for p in prompts]
    assert batched == single


@pytest.mark.parametrize("name", ["t5", "gpt2"])
def test_token_budget_is_respected(
    name: str, generators: GeneratorSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = generators.generators[name]
    new_token_counts: list[int] = []
    real_generate = generator.model.generate

    def measuring_generate(**kwargs: Any) -> Any:
        output = real_generate(**kwargs)
        prompt_length = 0 if name == "t5" else kwargs["input_ids"].shape[1]
        new_token_counts.append(output.shape[1] - prompt_length)
        return output

    monkeypatch.setattr(generator.model, "generate", measuring_generate)
    generator.generate(["기쁨, 안경", "슬픔"], sample=True)
    budget = generator.meta.generation.max_new_tokens
    assert new_token_counts and all(count <= budget + 1 for count in new_token_counts)  # +1: T5's start token


def test_causal_output_stops_at_the_first_newline(generators: GeneratorSet) -> None:
    generator = generators.generators["gpt2"]
    for text in generator.generate(["기쁨", "분노, 차"], sample=True):
        assert "\n" not in text


def test_sampling_settings_follow_the_metadata(
    generators: GeneratorSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = generators.generators["t5"]
    sampled = generator.generate_kwargs(sample=True)
    assert sampled["do_sample"] is False and sampled["num_return_sequences"] == 1  # DrawToken draws
    assert "temperature" not in sampled and "top_p" not in sampled and "top_k" not in sampled
    seen: list[dict[str, Any]] = []
    real_generate = generator.model.generate

    def recording_generate(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return real_generate(**kwargs)

    monkeypatch.setattr(generator.model, "generate", recording_generate)
    generator.generate(["기쁨, 안경", "슬픔"], sample=True)
    [draw] = [p for p in seen[0]["logits_processor"] if isinstance(p, DrawToken)]
    config = generator.meta.generation
    assert (draw.temperature, draw.top_k, draw.top_p) == (config.temperature, config.top_k, config.top_p)
    assert seen[0]["input_ids"].shape[0] == 2 * config.candidates  # a row per draw
    deterministic = generator.generate_kwargs(sample=False)
    assert deterministic["do_sample"] is False
    assert "temperature" not in deterministic and "top_p" not in deterministic
    assert deterministic["num_beams"] == generator.meta.eval_generation.num_beams


def reference_sampling_probs(
    scores: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """What ``do_sample=True`` would draw from: transformers' own warpers, in its order."""
    warped = TemperatureLogitsWarper(temperature)(None, scores.clone())
    if top_k:
        warped = TopKLogitsWarper(top_k)(None, warped)
    warped = TopPLogitsWarper(top_p)(None, warped)
    return torch.softmax(warped, dim=-1)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.8, 50, 0.9), (1.0, 0, 0.7), (0.5, 3, 1.0)])
def test_draw_token_draws_what_transformers_sampling_would(
    temperature: float, top_k: int, top_p: float
) -> None:
    """DrawToken (greedy loop + exponential race) samples from the same distribution as transformers'
    temperature → top-k → top-p → multinomial, and never outside the cuts."""
    torch.manual_seed(0)
    scores = torch.randn(1, 60) * 2
    scores[0, 7] = -math.inf  # a suppressed token is never drawn
    expected = reference_sampling_probs(scores, temperature, top_k, top_p)[0]
    rows = 40_000
    out = DrawToken(temperature, top_k, top_p)(None, scores.repeat(rows, 1))  # type: ignore[arg-type]
    assert ((out == 0).sum(dim=1) == 1).all() and (out.isinf().sum(dim=1) == 59).all()
    counts = torch.bincount(out.argmax(dim=1), minlength=60).float() / rows
    assert counts[expected == 0].sum() == 0
    assert torch.allclose(counts, expected, atol=0.01)


def test_sampled_comments_follow_the_seed(generators: GeneratorSet) -> None:
    generator = generators.generators["t5"]
    torch.manual_seed(1)
    first = generator.generate(["기쁨, 안경"] * 8, sample=True)
    torch.manual_seed(1)
    assert generator.generate(["기쁨, 안경"] * 8, sample=True) == first


def test_template_comment_uses_keywords_and_particles() -> None:
    assert "안경이 정말 멋져요" in template_comment(["기쁨", "안경", "나무"])
    assert "나무도" in template_comment(["기쁨", "안경", "나무"])
    assert "나무" in template_comment(["나무"])
    joy, sad = template_comment(["기쁨"]), template_comment(["슬픔"])
    assert joy != sad
    for keywords in (["기쁨"], ["슬픔", "차"], ["공포"], ["분노", "재킷"], [], ["Wi-Fi"]):
        text = template_comment(keywords)
        assert comment_problem(text, keywords) is None


def test_discover_sees_the_tiny_generators(tiny_weights_dir: Path) -> None:
    entries = discover_generators(tiny_weights_dir / "generators")
    assert entries["t5"].meta.architecture == "seq2seq"
    assert entries["gpt2"].meta.architecture == "causal"


@pytest.mark.parametrize("name", ["t5", "gpt2"])
def test_cpu_int8_quantizes_the_linear_layers_but_not_the_head(
    name: str, tiny_weights_dir: Path, tmp_path: Path
) -> None:
    """``cpu_int8``: dynamic int8 linear layers on a CPU (faster), the output head kept in float32;
    GPT-2's transposed ``Conv1D`` projections too (swapped for linear layers first)."""
    source = tiny_weights_dir / "generators" / name
    folder = copy_generator(source, tmp_path / "generators" / name, cpu_int8=True)
    generator = CommentGenerator.load(discover_generators(folder.parent)[name], "cpu")
    quantized = [name for name, m in generator.model.named_modules() if "quantized" in type(m).__module__]
    assert quantized and "lm_head" not in quantized
    assert not any(isinstance(m, Conv1D) for m in generator.model.modules())
    assert isinstance(generator.model.lm_head, torch.nn.Linear)
    assert len(generator.generate(["기쁨, 안경", "슬픔"], sample=False)) == 2
    plain = CommentGenerator.load(discover_generators(tiny_weights_dir / "generators")[name], "cpu")
    assert not any("quantized" in type(m).__module__ for m in plain.model.modules())


def test_conv1d_layers_become_the_same_linear_layers(generators: GeneratorSet) -> None:
    """The swap before int8 changes no number: same logits before and after."""
    model = copy.deepcopy(generators.generators["gpt2"].model)
    ids = torch.tensor([[5, 9, 14, 3]])
    with torch.no_grad():
        before = model(ids).logits
        swapped = _conv1d_as_linear(model)
        after = swapped(ids).logits
    assert any(isinstance(m, Conv1D) for m in generators.generators["gpt2"].model.modules())
    assert not any(isinstance(m, Conv1D) for m in swapped.modules())
    torch.testing.assert_close(after, before)


def test_draw_token_never_leaves_the_nucleus_on_a_zero_noise_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Exp(1) draw of 0 (possible in float32) must not turn 0/0 into a NaN that argmax would take."""
    monkeypatch.setattr(torch.Tensor, "exponential_", lambda self: self.zero_())
    scores = torch.tensor([[3.0, 2.0, -math.inf, 1.0]])
    out = DrawToken(1.0, 0, 0.5)(None, scores)  # type: ignore[arg-type]
    assert out.argmax().item() == 0


def test_a_feeling_without_a_face_emotion_is_retried_then_replaced(
    generators: GeneratorSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For keywords without an emotion a comment that reads a mood or a smile into the photo is not
    sent, however well it reads: retried once, then a template; with an emotion it is fine."""
    t5 = generators.generators["t5"]
    happy = "정말 행복해 보이시네요! 😊 의자도 멋져요!"
    monkeypatch.setattr(t5, "generate", lambda texts, sample: [happy for _ in texts])
    objects_only, with_joy = generators.comments("t5", [["의자"], ["기쁨", "의자"]], sample=True)
    assert objects_only.fallback and not reads_feeling(objects_only.text) and "의자" in objects_only.text
    assert not with_joy.fallback and with_joy.text == happy


def test_pick_puts_feelings_last_for_a_faceless_prompt() -> None:
    options = ["행복한 미소가 보기 좋아요! 😊", "의자가 참 멋지네요! 🪑"]
    slotted = SlottedKeywords("의자", {})
    assert CommentGenerator._pick(options, slotted, "first", faceless=True) == options[1]
    assert CommentGenerator._pick(options, slotted, "first") == options[0]
    assert CommentGenerator._pick(options[:1], slotted, "first", faceless=True) == options[0]  # none honest
