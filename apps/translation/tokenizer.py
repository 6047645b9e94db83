"""The subword tokenizer of translation: BPE or unigram, one vocabulary for both languages, the special tokens first;
trained on the training split, or read from a tokenizers JSON file or a checkpoint (errors name which)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from apps.common.errors import UserError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
TOKENIZERS = ("bpe", "unigram")


def train_tokenizer(texts: list[str], kind: str, vocab_size: int) -> Tokenizer:
    """A cased subword tokenizer (BPE or unigram) trained on ``texts``, with <pad> <bos> <eos> <unk> as ids 0-3."""
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False)
    elif kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIALS), unk_token="<unk>", show_progress=False
        )
    else:  # the data module checks --data.tokenizer: another kind here is a bug
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {TOKENIZERS}")
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    try:
        tokenizer.train_from_iterator(texts, trainer=trainer)
    except Exception as error:  # tokenizers raises bare Exceptions; this one is the unigram trainer's size check
        if "not large enough" not in str(error):
            raise
        raise UserError(f"--data.vocab_size {vocab_size} is too small for a unigram vocabulary of the training split: "
                        f"it must hold every character of the text and the special tokens ({error})") from None
    return check_tokenizer(tokenizer, f"the {kind} tokenizer trained on the training split")


def check_tokenizer(tokenizer: Tokenizer, where: str) -> Tokenizer:
    """The tokenizer, if its special tokens have the ids the model uses and its vocabulary holds more than them."""
    for expected_id, token in enumerate(SPECIALS):
        if tokenizer.token_to_id(token) != expected_id:
            raise UserError(f"{where}: token {token!r} must have id {expected_id}, has {tokenizer.token_to_id(token)}")
    if tokenizer.get_vocab_size() <= len(SPECIALS):
        raise UserError(f"{where}: the vocabulary holds only the special tokens {', '.join(SPECIALS)}; expected "
                        "subwords of the text as well")
    return tokenizer


def read_tokenizer(text: str, where: str) -> Tokenizer:
    """A tokenizer from its JSON text (a tokenizer file's or a checkpoint's), checked; errors name ``where``."""
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as error:  # tokenizers raises bare Exceptions for text that is not a tokenizer
        raise UserError(f"{where}: not a Hugging Face tokenizers JSON file ({error})") from None
    return check_tokenizer(tokenizer, where)


def read_tokenizer_file(path: Path) -> Tokenizer:
    """The tokenizer of --data.tokenizer_file."""
    where = f"--data.tokenizer_file {path}"
    if not path.is_file():
        raise UserError(f"{where}: {'is a folder' if path.is_dir() else 'does not exist'}; expected a tokenizers "
                        "JSON file (Tokenizer.save)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{where}: not UTF-8 text; expected a tokenizers JSON file (Tokenizer.save)") from None
    return read_tokenizer(text, where)


def tokenizer_kind(tokenizer: Tokenizer) -> str:
    """What --data.tokenizer names the tokenizer's model: bpe, unigram (or another model type, lowercased)."""
    return json.loads(tokenizer.to_str())["model"]["type"].lower()
