"""Object slots and Korean particles: what lets a small generator name objects it never saw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from inference.models.generators import CommentGenerator, DrawToken, SlotCoverage, comment_problem
from inference.models.registry import GeneratorMeta
from inference.text.josa import attach_particle, replace_token
from inference.text.slots import (
    MAX_SLOTS,
    SLOT_TOKENS,
    empty_slots,
    fill_slots,
    leftover_slots,
    missing_slots,
    slot_keywords,
)


@pytest.mark.parametrize(
    ("word", "written", "expected"),
    [
        ("안경", "<obj1>가 멋져요", "안경이 멋져요"),
        ("모자", "<obj1>가 멋져요", "모자가 멋져요"),
        ("연필", "<obj1>로 그린 그림", "연필로 그린 그림"),
        ("책", "<obj1>로 가득", "책으로 가득"),
        ("고양이", "<obj1>랑도 놀아요", "고양이랑도 놀아요"),
        ("꽃", "<obj1>와 함께, <obj1>를 들고", "꽃과 함께, 꽃을 들고"),
        ("나무", "<obj1>예요!", "나무예요!"),
        ("별", "<obj1>예요!", "별이에요!"),
        ("자전거", "<obj1>에서 <obj1>들이", "자전거에서 자전거들이"),
    ],
)
def test_replace_token_fixes_the_particle_for_the_real_word(word: str, written: str, expected: str) -> None:
    assert replace_token(written, "<obj1>", word) == expected


def test_attach_particle_on_non_hangul_words_uses_the_vowel_form() -> None:
    assert attach_particle("TV", "이") == "TV가"


def test_slot_keywords_slots_objects_only_in_order() -> None:
    slotted = slot_keywords(["기쁨", "안경", "나무", "안경", "슬픔"])
    assert slotted.text == "기쁨, 안경 <obj1>, 나무 <obj2>, 안경, 슬픔"
    assert slotted.names == {"<obj1>": "안경", "<obj2>": "나무"}


def test_slot_keywords_for_training_slots_only_mentioned_objects() -> None:
    slotted = slot_keywords(["기쁨", "안경", "나무"], mentioned={"나무"})
    assert slotted.text == "기쁨, 안경, 나무 <obj1>"
    assert slotted.names == {"<obj1>": "나무"}


def test_slots_are_capped() -> None:
    objects = [f"물건{i}" for i in range(MAX_SLOTS + 2)]
    slotted = slot_keywords(objects)
    assert len(slotted.names) == MAX_SLOTS
    assert slotted.text.endswith(f"물건{MAX_SLOTS}, 물건{MAX_SLOTS + 1}")


def test_empty_then_fill_gives_back_the_comment_and_fits_new_names() -> None:
    comment = "안경이 잘 어울려요! 😄 자전거 바퀴와 나무 아래에서 🌳"
    slotted = slot_keywords(["기쁨", "안경", "자전거 바퀴", "나무"])
    emptied = empty_slots(comment, slotted.names)
    assert emptied == "<obj1>가 잘 어울려요! 😄 <obj2>와 <obj3> 아래에서 🌳"
    assert fill_slots(emptied, slotted.names) == comment
    renamed = fill_slots(emptied, {"<obj1>": "모자", "<obj2>": "책", "<obj3>": "고슴도치"})
    assert renamed == "모자가 잘 어울려요! 😄 책과 고슴도치 아래에서 🌳"
    assert missing_slots(emptied, slotted.names) == 0
    assert missing_slots("<obj1>가 좋아요", slotted.names) == 2


def test_a_slot_without_an_object_fails_the_post_check() -> None:
    text = fill_slots("<obj1>가 멋지고 <obj2>도 예뻐요 😊", {"<obj1>": "안경"})
    assert leftover_slots(text) == ["<obj2>"]
    assert comment_problem(text, ["기쁨", "안경"]) == "object slot with no object"


SLOT_IDS = {token: 100 + i for i, token in enumerate(SLOT_TOKENS)}


class ScriptedGenerator(CommentGenerator):
    """The generator pipeline around a scripted model: what ``_generate`` returns is fixed."""

    def __init__(self, meta: GeneratorMeta, outputs: Sequence[Sequence[str]]) -> None:
        slot_ids = SimpleNamespace(
            convert_tokens_to_ids=lambda tokens: [SLOT_IDS[t] for t in tokens], pad_token_id=0, eos_token_id=1
        )
        super().__init__("scripted", meta, model=None, tokenizer=slot_ids, device="cpu")  # type: ignore[arg-type]
        self.outputs = [list(options) for options in outputs]
        self.seen_prompts: list[str] = []
        self.seen_kwargs: list[dict[str, Any]] = []

    @staticmethod
    def _model_class() -> Any:
        return None

    def _generate(self, prompts: Sequence[str], kwargs: dict[str, Any]) -> list[str]:
        self.seen_prompts.extend(prompts)
        self.seen_kwargs.append(kwargs)
        return [text for options in self.outputs for text in options]


def slot_meta(**changes: Any) -> GeneratorMeta:
    beams = {"do_sample": False, "num_beams": 3}
    fields = {"architecture": "seq2seq", "object_slots": True, "eval_generation": beams}
    return GeneratorMeta.model_validate(fields | changes)


def test_the_best_beam_that_names_every_object_wins_and_is_filled() -> None:
    generator = ScriptedGenerator(
        slot_meta(),
        [["<obj1>가 멋져요 😊", "<obj1>와 <obj2> 모두 멋져요 😊", "<obj2>만 😊"]],
    )
    assert generator.candidates_per_prompt(sample=False) == 3
    assert generator.candidates_per_prompt(sample=True) == 1  # sampling: one draw per photo
    [comment] = generator.generate(["기쁨, 고슴도치, 바이올린"], sample=False)
    assert generator.seen_prompts == ["기쁨, 고슴도치 <obj1>, 바이올린 <obj2>"]
    assert comment == "고슴도치와 바이올린 모두 멋져요 😊"
    # Two objects: the model may not write <obj3>…<obj8>, which nothing could fill.
    [coverage] = generator.seen_kwargs[0]["logits_processor"]
    scores = coverage(torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 200))
    barred = [token for token, i in SLOT_IDS.items() if scores[0, i] == -math.inf]
    assert barred == list(SLOT_TOKENS[2:])


def test_without_a_complete_beam_the_top_one_is_used() -> None:
    generator = ScriptedGenerator(slot_meta(), [["<obj1>가 멋져요 😊", "좋아요 😊"]])
    assert generator.generate(["기쁨, 책, 꽃"], sample=False) == ["책이 멋져요 😊"]


def test_consensus_pick_takes_the_complete_beam_most_like_the_others() -> None:
    beams = [
        "<obj1>가 멋져요 😊",  # names one object only: never chosen while a complete beam exists
        "<obj1>와 <obj2> 모두 멋져요 😊",
        "<obj1>와 <obj2> 모두 정말 멋져요 😊",
        "<obj2>와 <obj1>, 정말 멋져요 😊",
    ]
    generator = ScriptedGenerator(
        slot_meta(eval_generation={"do_sample": False, "num_beams": 4, "pick": "consensus"}), [beams]
    )
    assert generator.generate(["기쁨, 책, 꽃"], sample=False) == ["책과 꽃 모두 정말 멋져요 😊"]
    assert "pick" not in generator.seen_kwargs[0] and "candidates" not in generator.seen_kwargs[0]


def test_sampling_draws_the_configured_number_of_candidates() -> None:
    meta = slot_meta(object_slots=False, generation={"do_sample": True, "candidates": 4, "pick": "consensus"})
    generator = ScriptedGenerator(
        meta, [["좋아요 😊", "정말 좋아요 😊", "정말 좋네요 😊", "정말 좋아 보여요 😊"]]
    )
    assert generator.candidates_per_prompt(sample=True) == 4
    assert generator.generate(["기쁨"], sample=True) == ["정말 좋아요 😊"]
    # each draw is a row of its own, drawn by DrawToken in transformers' greedy loop
    assert generator.seen_prompts == ["기쁨"] * 4
    assert generator.seen_kwargs[0]["num_return_sequences"] == 1
    assert generator.seen_kwargs[0]["do_sample"] is False
    [draw] = generator.seen_kwargs[0]["logits_processor"]
    assert isinstance(draw, DrawToken)
    # without slots, a deterministic consensus pick still sees every beam
    consensus = slot_meta(
        object_slots=False, eval_generation={"do_sample": False, "num_beams": 5, "pick": "consensus"}
    )
    assert ScriptedGenerator(consensus, []).candidates_per_prompt(sample=False) == 5


class QueuedGenerator(ScriptedGenerator):
    """A scripted model whose successive ``generate`` calls return the next list of raw texts."""

    def __init__(self, meta: GeneratorMeta, calls: Sequence[Sequence[str]]) -> None:
        super().__init__(meta, [])
        self.calls = [list(texts) for texts in calls]

    def _generate(self, prompts: Sequence[str], kwargs: dict[str, Any]) -> list[str]:
        self.seen_prompts.extend(prompts)
        self.seen_kwargs.append(kwargs)
        return self.calls.pop(0)


def test_sampling_draws_again_only_for_photos_where_no_draw_names_every_object() -> None:
    sampled = {"do_sample": True, "candidates": 2, "pick": "first", "redraw_incomplete": True}
    first_call = [
        "<obj1>가 좋아요 😊",
        "<obj1>와 <obj2> 멋져요 😊",  # photo 1: one draw names both objects
        "<obj1>만 귀여워요 😊",
        "좋아요 😊",  # photo 2: none does
    ]
    second_call = ["<obj2>와 <obj1> 최고예요 😊", "😊"]
    generator = QueuedGenerator(slot_meta(generation=sampled), [first_call, second_call])
    comments = generator.generate(["기쁨, 책, 꽃", "기쁨, 개, 차"], sample=True)
    assert comments == ["책과 꽃 멋져요 😊", "차와 개 최고예요 😊"]
    assert generator.seen_prompts[4:] == ["기쁨, 개 <obj1>, 차 <obj2>"] * 2  # the second draw: photo 2 only
    assert not generator.calls
    # without the switch (or with beams) the first candidates are final
    plain = QueuedGenerator(slot_meta(generation=sampled | {"redraw_incomplete": False}), [first_call])
    assert plain.generate(["기쁨, 책, 꽃", "기쁨, 개, 차"], sample=True)[1] == "개만 귀여워요 😊"


def test_beam_search_runs_again_with_a_stronger_nudge_only_where_no_beam_names_every_object() -> None:
    beams = {"do_sample": False, "num_beams": 2, "pick": "first", "redraw_incomplete": True}
    first_call = [
        "<obj1>와 <obj2> 멋져요 😊",  # photo 1: complete
        "<obj1>만 멋져요 😊",
        "<obj1>만 귀여워요 😊",  # photo 2: no beam names both
        "좋아요 😊",
    ]
    second_call = ["<obj1>와 <obj2> 최고예요 😊", "<obj2>예요 😊"]
    meta = slot_meta(slot_end_penalty=8.0, eval_generation=beams | {"redraw_end_penalty": 12.0})
    generator = QueuedGenerator(meta, [first_call, second_call])
    comments = generator.generate(["기쁨, 책, 꽃", "기쁨, 개, 차"], sample=False)
    assert comments == ["책과 꽃 멋져요 😊", "개와 차 최고예요 😊"]
    assert generator.seen_prompts[2:] == ["기쁨, 개 <obj1>, 차 <obj2>"]  # the second search: photo 2 only
    first_nudge, second_nudge = (kwargs["logits_processor"][0] for kwargs in generator.seen_kwargs)
    assert (first_nudge.end_penalty, second_nudge.end_penalty) == (8.0, 12.0)
    assert "redraw_end_penalty" not in generator.seen_kwargs[0]  # ours, not generate's
    # the same search with the same nudge would find the same beams: no second search
    same = slot_meta(slot_end_penalty=8.0, eval_generation=beams)
    once = QueuedGenerator(same, [first_call])
    assert once.generate(["기쁨, 책, 꽃", "기쁨, 개, 차"], sample=False)[1] == "개만 귀여워요 😊"


def test_a_comment_without_any_emoji_gets_one() -> None:
    """No candidate wrote an emoji: the first object's emoji, else ✨ (no mood), is added."""
    generator = ScriptedGenerator(slot_meta(), [["<obj1>가 정말 귀엽네요!", "<obj1> 최고"]])
    assert generator.generate(["기쁨, 개"], sample=False) == ["개가 정말 귀엽네요! 🐶"]
    plain = ScriptedGenerator(slot_meta(object_slots=False), [["멋진 사진이에요!"]])
    assert plain.generate(["기쁨"], sample=False) == ["멋진 사진이에요! ✨"]


def test_a_model_without_slots_gets_the_plain_keywords() -> None:
    generator = ScriptedGenerator(slot_meta(object_slots=False), [["안경이 멋져요 😊"]])
    assert generator.candidates_per_prompt(sample=False) == 1
    assert generator.generate(["기쁨, 안경"], sample=False) == ["안경이 멋져요 😊"]
    assert generator.seen_prompts == ["기쁨, 안경"]


def test_slot_coverage_bars_repeats_and_missing_slots_and_nudges_the_end() -> None:
    """Rows: prompt 0 (two slots) and prompt 1 (no slot), two beams each; token ids 10/11 are slots."""
    coverage = SlotCoverage([10, 11, 12], [2, 0], eos_id=1, end_penalty=5.0)
    prompt = torch.tensor([[7, 7]] * 4)  # a causal model's prompt: slots in it don't count
    assert coverage(prompt, torch.zeros(4, 13)).shape == (4, 13)
    written = torch.cat([prompt, torch.tensor([[10], [3], [4], [4]])], dim=1)
    scores = coverage(written, torch.zeros(4, 13))
    assert scores[0, 10] == -math.inf and scores[0, 11] == 0  # <obj1> written: <obj2> next, not again
    assert scores[0, 1] == -5.0 and scores[1, 1] == -5.0  # ending early costs 5, but is allowed
    assert scores[0, 12] == -math.inf  # prompt 0 has no <obj3>
    assert (scores[2:, 10:13] == -math.inf).all() and (scores[2:, 1] == 0).all()  # no slots at all
    both = torch.cat([written, torch.tensor([[11], [3], [4], [4]])], dim=1)
    done = coverage(both, torch.zeros(4, 13))
    assert done[0, 1] == 0  # all written: the end is free
    assert done[0, 10] == -math.inf and done[0, 11] == -math.inf  # and no object is named twice
