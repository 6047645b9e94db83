"""Captions as word ids: the caption tokenisation (``words``, also what the metrics compare) and the Vocabulary a
model is trained with and keeps in its checkpoints."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from apps.common.errors import UserError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


def words(text: str) -> list[str]:
    """Lower-cased words without punctuation, the usual caption tokenisation (Karpathy's JSON tokens alike)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


class Vocabulary:
    """Word <-> id, with <pad>, <bos>, <eos> and <unk> first."""

    def __init__(self, tokens: list[str]) -> None:
        if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {tokens[: len(SPECIALS)]}")
        self.tokens = list(tokens)
        self.index = {w: i for i, w in enumerate(self.tokens)}

    @classmethod
    def from_captions(cls, captions: Iterable[str], min_count: int) -> Vocabulary:
        """The words that occur at least ``min_count`` times, most frequent first (ties alphabetically)."""
        counts = Counter(w for caption in captions for w in words(caption))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, caption: str) -> list[int]:
        return [self.index.get(w, UNK) for w in words(caption)]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.tokens[i] for i in ids if i >= len(SPECIALS) or i == UNK)


def checkpoint_vocabulary(artefacts: dict, checkpoint: str) -> Vocabulary:
    """The vocabulary a captioning checkpoint was trained with; any other checkpoint is an error that names it."""
    tokens = artefacts.get("vocabulary")
    if not (isinstance(tokens, list) and tokens[: len(SPECIALS)] == list(SPECIALS)
            and all(isinstance(t, str) for t in tokens)):
        found = f"artefacts {sorted(artefacts)}" if tokens is None else f"a vocabulary starting {_brief(tokens)}"
        raise UserError(f"--ckpt_path {checkpoint}: not a captioning checkpoint (it holds {found}; a captioning "
                        f"model's vocabulary starts with {', '.join(SPECIALS)})")
    return Vocabulary(tokens)


def _brief(tokens) -> str:
    return repr(tokens[:6])[:80] if isinstance(tokens, list) else type(tokens).__name__
