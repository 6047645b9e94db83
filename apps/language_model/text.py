"""The text of the language model: the standard library's own source files, text files and folders, and the char,
bpe or word tokenizer (Hugging Face ``tokenizers``) with, per token, the characters of the text it covers."""

from __future__ import annotations

import json
import os
import sysconfig
import zlib
from pathlib import Path
from typing import NamedTuple

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor

from apps.common.errors import UserError

UNK = "<unk>"
TOKENIZERS = ("char", "bpe", "word")
DEFAULT_VOCAB_SIZE = 8000  # of bpe and word
#: the smallest vocabulary each trained tokenizer can have: <unk> and a word; the 256 byte tokens
SMALLEST_VOCABULARY = {"word": 2, "bpe": 256}
#: standard library folders left out: tests, installed packages, generated tables (codecs, documentation)
NOT_LIBRARY = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "encodings", "pydoc_data"}


def stdlib_texts(max_chars: int, shares: dict[str, float]) -> dict[str, str]:
    """The standard library's .py files, about ``max_chars`` in all, whole files per split. The files come in the
    order of a checksum of their paths (fixed for a Python version, spread over the whole library); each goes to
    the first split (in the order of ``shares``) that has room for it in its share of ``max_chars``."""
    root, files = Path(sysconfig.get_paths()["stdlib"]), []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in NOT_LIBRARY]
        files += [Path(folder, name) for name in names if name.endswith(".py")]
    room, parts = {s: share * max_chars for s, share in shares.items()}, {s: [] for s in shares}
    for file in sorted(files, key=lambda f: (zlib.crc32(f.relative_to(root).as_posix().encode()), f)):
        split = next((s for s, left in room.items() if file.stat().st_size <= left), None)
        if split is not None:
            parts[split].append(file.read_text(encoding="utf-8", errors="replace"))
            room[split] -= file.stat().st_size
    return {split: "".join(texts) for split, texts in parts.items()}


def read_text(path: Path) -> str:
    """A UTF-8 text file, or the files of a folder (sorted, hidden ones left out); errors name the file and line."""
    if path.is_dir():
        return "".join(read_text(f) for f in sorted(path.rglob("*")) if f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(path).parts))
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 ({error.reason})") from None


def split_by_ratios(text: str, val_ratio: float, test_ratio: float) -> dict[str, str]:
    """Contiguous parts: training first, then validation, then test."""
    train_end, val_end = int(len(text) * (1 - val_ratio - test_ratio)), int(len(text) * (1 - test_ratio))
    return {"train": text[:train_end], "val": text[train_end:val_end], "test": text[val_end:]}


def hf_texts(name: str, config: str | None, column: str, val_ratio: float, test_ratio: float) -> dict[str, str]:
    """A Hugging Face dataset's text column: its train, validation and test splits, or its train split cut by the
    ratios."""
    import datasets  # imported here: it is slow to import and only this source needs it

    data = datasets.load_dataset(name, config)
    if "train" not in data or column not in data["train"].column_names:
        raise UserError(f"--data.hf_dataset {name!r} needs a 'train' split with the column --data.text_column="
                        f"{column!r}; it has {data.column_names}")
    splits = {"train": "train", "val": "validation", "test": "test"}
    texts = {split: "\n".join(data[found][column]) for split, found in splits.items() if found in data}
    return texts if "val" in texts else split_by_ratios(texts["train"], val_ratio, test_ratio)


def train_tokenizer(text: str, kind: str, vocab_size: int) -> Tokenizer:
    """A char, bpe or word tokenizer trained on ``text``."""
    if kind == "char":  # each character of the training text is a token; others are <unk>
        tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate([UNK, *sorted(set(text))])}, UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        return tokenizer
    if kind == "bpe":  # byte level (GPT-2's): every text has a tokenization, and decoding gives it back
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    else:  # words and punctuation between white space; decoding joins them with spaces
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[UNK], show_progress=False)
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tokenizer


def tokenizer_kind(tokenizer: Tokenizer) -> str:
    """What --data.tokenizer names a tokenizer that train_tokenizer made: char, bpe or word (or its model type)."""
    spec = json.loads(tokenizer.to_str())
    model, pre_tokenizer = spec["model"]["type"], (spec.get("pre_tokenizer") or {}).get("type")
    if model == "WordLevel" and pre_tokenizer in ("Split", "Whitespace"):
        return "char" if pre_tokenizer == "Split" else "word"
    return model.lower()


class Tokens(NamedTuple):
    """A split's token ids and, per token, the characters of the text since the token before it ended."""

    ids: Tensor
    chars: Tensor


def encode(tokenizer: Tokenizer, text: str) -> Tokens:
    ids, ends, lines, offset = [], [], text.splitlines(keepends=True), 0
    for start in range(0, len(lines), 4096):  # in blocks: an encoding holds every token's string and offsets
        for line, encoding in zip(lines[start : start + 4096], tokenizer.encode_batch(lines[start : start + 4096]),
                                  strict=True):
            ids += encoding.ids
            ends += [offset + end for _, end in encoding.offsets]
            offset += len(line)
    ends = torch.tensor(ends, dtype=torch.long)
    return Tokens(torch.tensor(ids, dtype=torch.long), torch.diff(ends, prepend=ends.new_zeros(1)))
