"""Train a byte-level BPE tokenizer on the comment data for models built from scratch.

Byte-level means every string round-trips and nothing is ever unknown (an object name from a
user's photo may hold syllables the data never had); the merges learned on the data keep frequent
Hangul syllables, words and emojis as single tokens, which keeps sequences short and decoding fast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

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
