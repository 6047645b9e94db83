"""The text of translation: generated number pairs, and reading sentence pairs (Multi30k files, tsv files, Hugging Face
datasets) and sentences to translate; errors name the file and line or the option at fault. The tokenizer:
tokenizer.py."""

from __future__ import annotations

import gzip
import math
import random
import sys
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from apps.common.data import fetch
from apps.common.errors import UserError

DATASETS = ("generated", "multi30k", "tsv", "hf")
MULTI30K_TEST_SPLITS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr", "val")
#: the languages of the generated pairs
GENERATED_LANGUAGES = ("en", "de")
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
                raise UserError(
                    f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start} of the line)"
                ) from None
    return lines


def pair_lines(
    source: list[str], target: list[str], where: tuple[str, str], empty_lines: str
) -> tuple[list[str], list[str]]:
    """Zips two sides line by line: equal counts required; pairs with an empty side are dropped (counted and warned
    about) or are an error, by ``empty_lines`` ("skip" or "error"); no pair left is an error. Every source of pairs
    passes here."""
    if len(source) != len(target):
        raise UserError(
            f"{where[0]} has {len(source)} lines but {where[1]} has {len(target)}; a parallel corpus needs one "
            f"target line for every source line"
        )
    kept_source, kept_target, skipped = [], [], []
    for number, (s, t) in enumerate(zip(source, target, strict=True), start=1):
        s, t = s.strip(), t.strip()
        if s and t:
            kept_source.append(s)
            kept_target.append(t)
            continue
        place = f"{where[0] if not s else where[1]}:{number}"
        if empty_lines == "error":
            raise UserError(f"{place}: empty line (pass --data.empty_lines skip to drop such pairs)")
        skipped.append(place)
    named = where[0] if where[0] == where[1] else f"{where[0]} and {where[1]}"
    if not kept_source:
        raise UserError(f"{named}: no sentence pairs: " + (f"all {len(source)} have an empty side (dropped by "
                        "--data.empty_lines skip)" if source else "no lines"))
    if skipped:
        rank_zero_warn(f"skipped {len(skipped)} pairs with an empty side, first at {', '.join(skipped[:5])}")
    return kept_source, kept_target


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """The two columns of a ``source<TAB>target`` file; a blank line is a pair of empty sides (for ``pair_lines`` to
    skip or refuse), any other line must hold exactly two fields."""
    if not path.is_file():
        raise UserError(f"--data.path {path}: {'is a folder' if path.is_dir() else 'does not exist'}; dataset 'tsv' "
                        "expects a file of source<TAB>target lines")
    source, target = [], []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t") if line.strip() else ["", ""]
        if len(fields) != 2:
            raise UserError(f"{path}:{number}: expected source<TAB>target (2 tab-separated fields), found "
                            f"{len(fields)} field{'s' if len(fields) > 1 else ' (no tab)'}")
        source.append(fields[0])
        target.append(fields[1])
    return source, target


def multi30k_file(directory: Path | None, name: str, lang: str, cache_dir: str) -> Path:
    """One Multi30k raw file, ``<dir>/<name>.<lang>.gz`` (or without .gz), or downloaded when no dir is given."""
    file = f"{name}.{lang}.gz"
    if directory is None:
        return fetch(MULTI30K_URL.format(name=file), Path(cache_dir) / "multi30k")
    for candidate in (directory / file, directory / file.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"Multi30k split file {directory / file} is missing; --data.path must be a folder holding "
        f"{{train,val,test_2016_flickr}}.{{de,en}}.gz (the raw files of github.com/multi30k/dataset)"
    )


def split_by_fractions(pairs: tuple[list[str], list[str]], val_fraction: float, test_fraction: float, seed: int,
                       where: str) -> dict[str, tuple[list[str], list[str]]]:
    """Train, validation and test pairs, drawn at random by the fractions; a split left empty is an error."""
    order = list(range(len(pairs[0])))
    random.Random(seed).shuffle(order)
    n_val, n_test = math.ceil(len(order) * val_fraction), math.ceil(len(order) * test_fraction)
    parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    for split, part in parts.items():
        if not part:
            raise UserError(f"{where}: the {split} split is empty: of {len(order)} pairs, --data.val_fraction "
                            f"{val_fraction} and --data.test_fraction {test_fraction} leave none for it")
    return {split: tuple([side[i] for i in part] for side in pairs) for split, part in parts.items()}


def hf_pairs(name: str, config: str | None, languages: tuple[str, str],
             empty_lines: str) -> dict[str, tuple[list[str], list[str]]]:
    """The train, validation and test pairs of a Hugging Face dataset (a 'translation' column, or one column per
    language)."""
    import datasets  # imported here: it is slow to import and only this source needs it

    data = datasets.load_dataset(name, config)
    candidates = {"train": ("train",), "val": ("validation", "val", "dev"), "test": ("test",)}
    splits = {}
    for split, names in candidates.items():
        found = next((c for c in names if c in data), None)
        if found is None:
            raise UserError(f"--data.hf_dataset {name!r} has splits {list(data)}; expected one of {names} for {split}")
        rows = data[found]
        if "translation" in rows.column_names:
            sides = tuple([pair[lang] for pair in rows["translation"]] for lang in languages)
        elif set(languages) <= set(rows.column_names):
            sides = tuple(list(rows[lang]) for lang in languages)
        else:
            raise UserError(f"--data.hf_dataset {name!r} split {found!r} has columns {rows.column_names}; expected "
                            f"'translation' or the languages' (--data.source_lang, --data.target_lang) {languages}")
        where = f"--data.hf_dataset {name}[{found}]"
        splits[split] = pair_lines(*sides, (where, where), empty_lines)
    return splits


def sentences(path: str) -> list[str]:
    """The sentences to translate, one a line, from a file or ("-") standard input; blank lines are left out, and
    none left is an error."""
    if path == "-":
        lines, where = sys.stdin.read().splitlines(), "--data.predict_path - (standard input)"
    else:
        file, where = Path(path).expanduser(), f"--data.predict_path {path}"
        if not file.is_file():
            raise UserError(f"{where}: {'is a folder' if file.is_dir() else 'does not exist'}; expected a text file "
                            "of sentences to translate, one a line")
        lines = read_lines(file)
    kept = [line.strip() for line in lines if line.strip()]
    if not kept:
        raise UserError(f"{where}: no sentence to translate ({len(lines)} lines, all blank); expected one a line")
    return kept
