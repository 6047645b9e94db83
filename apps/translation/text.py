"""The text of translation: generated number pairs, reading sentence files, and the subword tokenizer (BPE or unigram,
one vocabulary for both languages, the special tokens first)."""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from apps.common.data import fetch

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
DATASETS = ("generated", "multi30k", "tsv", "hf")
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{name}"

# ---------------------------------------------------------------------------------------------- generated pairs

_EN_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_DE_ONES = [
    "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf", "zwölf",
    "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn",
]
_DE_TENS = ["", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"]


def english_number(n: int) -> str:
    """0 <= n < 1,000,000 in English words: 342512 -> 'three hundred forty two thousand five hundred twelve'."""
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("" if n % 10 == 0 else " " + _EN_ONES[n % 10])
    if n < 1000:
        return _EN_ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + english_number(n % 100))
    return english_number(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + english_number(n % 1000))


def german_number(n: int, alone: bool = True) -> str:
    """0 <= n < 1,000,000 in German words, units before tens: 342512 -> 'drei hundert zwei und vierzig tausend fünf
    hundert zwölf' (written apart, so that the reordering is one of words)."""
    if n < 20:
        return "ein" if n == 1 and not alone else _DE_ONES[n]
    if n < 100:
        unit = n % 10
        return _DE_TENS[n // 10] if unit == 0 else f"{german_number(unit, False)} und {_DE_TENS[n // 10]}"
    if n < 1000:
        rest = n % 100
        return german_number(n // 100, False) + " hundert" + ("" if rest == 0 else " " + german_number(rest))
    rest = n % 1000
    return german_number(n // 1000, False) + " tausend" + ("" if rest == 0 else " " + german_number(rest))


def generated_pairs(counts: dict[str, int], seed: int) -> dict[str, tuple[list[str], list[str]]]:
    """English -> German number pairs; the splits hold disjoint numbers, drawn log-uniformly below a million."""
    rng = random.Random(seed)
    seen: set[int] = set()
    splits = {}
    for split, count in counts.items():
        numbers = []
        while len(numbers) < count:
            n = int(10 ** rng.uniform(0, 6)) - 1
            if n not in seen:
                seen.add(n)
                numbers.append(n)
        splits[split] = ([english_number(n) for n in numbers], [german_number(n) for n in numbers])
    return splits


# ---------------------------------------------------------------------------------------------------- reading


@dataclass
class ReadReport:
    """What reading a parallel corpus dropped."""

    empty: int = 0
    first_empty: list[str] = field(default_factory=list)


def read_lines(path: Path) -> list[str]:
    """The lines of a text file (gzip when it ends in .gz), decoded as UTF-8; an undecodable line is an error that
    names the file and the line."""
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start} of the line)"
                ) from None
    return lines


def pair_lines(
    source: list[str], target: list[str], where: tuple[str, str], empty_lines: str
) -> tuple[list[str], list[str], ReadReport]:
    """Zips two sides line by line: equal counts required; pairs with an empty side are dropped (and counted) or
    are an error, by ``empty_lines`` ("skip" or "error")."""
    if len(source) != len(target):
        raise ValueError(
            f"{where[0]} has {len(source)} lines but {where[1]} has {len(target)}; a parallel corpus needs one "
            f"target line for every source line"
        )
    report, kept_source, kept_target = ReadReport(), [], []
    for number, (s, t) in enumerate(zip(source, target, strict=True), start=1):
        s, t = s.strip(), t.strip()
        if s and t:
            kept_source.append(s)
            kept_target.append(t)
            continue
        place = f"{where[0] if not s else where[1]}:{number}"
        if empty_lines == "error":
            raise ValueError(f"{place}: empty line (pass --data.empty_lines skip to drop such pairs)")
        report.empty += 1
        if len(report.first_empty) < 5:
            report.first_empty.append(place)
    return kept_source, kept_target, report


def multi30k_file(directory: Path | None, name: str, lang: str, cache_dir: str) -> Path:
    """One Multi30k raw file, ``<dir>/<name>.<lang>.gz`` (or without .gz), or downloaded when no dir is given."""
    file = f"{name}.{lang}.gz"
    if directory is None:
        return fetch(MULTI30K_URL.format(name=file), Path(cache_dir) / "multi30k")
    for candidate in (directory / file, directory / file.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Multi30k split file {directory / file} is missing; --data.path must be a folder holding "
        f"{{train,val,test_2016_flickr}}.{{de,en}}.gz (the raw files of github.com/multi30k/dataset)"
    )


# --------------------------------------------------------------------------------------------------- tokenizer


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
    else:
        raise ValueError(f"unknown tokenizer {kind!r}; expected 'bpe' or 'unigram' (or give --data.tokenizer_file)")
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def check_tokenizer(tokenizer: Tokenizer, where: str) -> Tokenizer:
    for expected_id, token in enumerate(SPECIALS):
        if tokenizer.token_to_id(token) != expected_id:
            raise ValueError(f"{where}: token {token!r} must have id {expected_id}, has {tokenizer.token_to_id(token)}")
    return tokenizer
