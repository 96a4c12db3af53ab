"""Train a byte-level BPE tokenizer on the comment data for models built from scratch.

Byte-level means every string round-trips and nothing is ever unknown (an object name from a
user's photo may hold syllables the data never had); the merges learned on the data keep frequent
Hangul syllables, words and emojis as single tokens, which keeps sequences short and decoding fast.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, EOS, UNK]  # ids 0, 1, 2: T5's convention (pad doubles as decoder start)


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int, append_eos: bool, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """A fast tokenizer trained on ``texts``.

    ``append_eos`` makes encoding add ``</s>`` like T5's tokenizer does (seq2seq inputs and
    labels); causal models get the eos appended by the training code after the comment only.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if append_eos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, tokenizer.token_to_id(EOS))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    logger.info("trained byte-level BPE tokenizer: %d tokens", tokenizer.get_vocab_size())
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )


def fragment_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of tokens that are not whole characters (a piece of a UTF-8 byte sequence).

    A byte-level vocabulary trained on the data holds every frequent syllable and emoji whole;
    the leftover fragments only spell rare characters, and a small model that strings them badly
    produces U+FFFD. Suppressing them at generation time makes that impossible. Only for
    tokenizers trained here: a pretrained English byte-level vocabulary spells Korean with them.
    """
    special = set(tokenizer.all_special_ids)
    return [
        token_id
        for token_id in range(len(tokenizer))
        if token_id not in special and "\ufffd" in tokenizer.decode([token_id])
    ]


def suppress_fragments_in_folder(folder: Path) -> int:
    """Add ``suppress_tokens`` (the fragment ids) to both generation settings of a generator folder."""
    from transformers import AutoTokenizer

    from inference.models.registry import META_FILENAME, GeneratorMeta

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = fragment_token_ids(tokenizer)
    meta_path = folder / META_FILENAME
    meta = GeneratorMeta.model_validate_json(meta_path.read_text(encoding="utf-8"))
    for config in (meta.generation, meta.eval_generation):
        setattr(config, "suppress_tokens", ids)  # noqa: B010 - an extra field the pydantic model allows
    meta_path.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return len(ids)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.tokenizer --suppress-fragments FOLDER``: patch an existing generator."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--suppress-fragments", type=Path, required=True, metavar="FOLDER")
    args = parser.parse_args(argv)
    count = suppress_fragments_in_folder(args.suppress_fragments)
    print(f"{args.suppress_fragments}: {count} fragment tokens suppressed in generation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
