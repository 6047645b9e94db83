"""Translation data: generated pairs, Multi30k files, tsv and Hugging Face sources, bad input, bucketing."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
from pathlib import Path

import pytest
import torch

from apps.common.errors import UserError
from apps.translation.data import PairDataset, TranslationDataModule, collate
from apps.translation.sampler import BucketSampler
from apps.translation.text import english_number, generated_pairs, german_number
from apps.translation.tokenizer import BOS, EOS, PAD, SPECIALS, train_tokenizer


@pytest.mark.parametrize(
    ("n", "english", "german"),
    [
        (0, "zero", "null"),
        (1, "one", "eins"),
        (21, "twenty one", "ein und zwanzig"),
        (101, "one hundred one", "ein hundert eins"),
        (342512, "three hundred forty two thousand five hundred twelve",
         "drei hundert zwei und vierzig tausend fünf hundert zwölf"),
    ],
)
def test_numbers_in_words(n, english, german):
    assert english_number(n) == english
    assert german_number(n) == german


def test_generated_splits_hold_disjoint_numbers():
    splits = generated_pairs({"train": 500, "val": 100, "test": 100}, seed=3)
    sides = {name: set(source) for name, (source, _) in splits.items()}
    assert not sides["train"] & sides["val"] and not sides["train"] & sides["test"] and not sides["val"] & sides["test"]
    assert generated_pairs({"train": 500, "val": 100, "test": 100}, seed=3) == splits


def _write(path: Path, lines: list[str] | bytes) -> Path:
    data = lines if isinstance(lines, bytes) else "".join(line + "\n" for line in lines).encode()
    with gzip.open(path, "wb") if path.suffix == ".gz" else path.open("wb") as f:
        f.write(data)
    return path


def _multi30k(folder: Path, pairs: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test_2016_flickr"):
        _write(folder / f"{split}.de.gz", [f"ein Hund läuft {i} mal" for i in range(pairs)])
        _write(folder / f"{split}.en.gz", [f"a dog runs {i} times" for i in range(pairs)])
    return folder


def _setup(**kwargs) -> TranslationDataModule:
    data = TranslationDataModule(**({"vocab_size": 120, "batch_size": 8} | kwargs))
    data.setup("fit")
    data.setup("test")
    return data


def test_multi30k_folder_de_to_en(tmp_path):
    data = _setup(dataset="multi30k", path=str(_multi30k(tmp_path / "m30k")))
    assert {name: len(d) for name, d in data.splits.items()} == {"train": 40, "val": 40, "test": 40}
    _, source, _, source_text, target_text = data.splits["train"][3]
    assert source_text == "ein Hund läuft 3 mal" and target_text == "a dog runs 3 times"
    assert data.tokenizer.decode(source) == source_text  # detokenised exactly
    reverse = _setup(dataset="multi30k", path=str(tmp_path / "m30k"), source_lang="en", target_lang="de")
    assert reverse.splits["train"][3][3] == "a dog runs 3 times"


def test_missing_split_file_is_named(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    (folder / "val.en.gz").unlink()
    with pytest.raises(UserError, match=r"Multi30k split file .*val\.en\.gz is missing"):
        _setup(dataset="multi30k", path=str(folder))


def test_line_count_mismatch_names_both_counts(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "train.en.gz", ["a dog"] * 39)
    with pytest.raises(ValueError, match=r"train\.de\.gz has 40 lines but .*train\.en\.gz has 39"):
        _setup(dataset="multi30k", path=str(folder))


def test_empty_lines_skipped_and_counted_or_an_error(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "train.de.gz", ["ein Hund"] * 10 + [""] + ["ein Hund"] * 29)
    with pytest.warns(UserWarning, match=r"skipped 1 pairs with an empty side, first at .*train\.de\.gz:11"):
        data = _setup(dataset="multi30k", path=str(folder))
    assert len(data.splits["train"]) == 39
    with pytest.raises(ValueError, match=r"train\.de\.gz:11: empty line"):
        _setup(dataset="multi30k", path=str(folder), empty_lines="error")


def test_undecodable_bytes_name_file_and_line(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "train.en.gz", b"a dog\n" * 5 + b"caf\xe9\n" + b"a dog\n" * 34)
    with pytest.raises(ValueError, match=r"train\.en\.gz:6: not valid UTF-8"):
        _setup(dataset="multi30k", path=str(folder))


def test_long_lines_truncated_counted_and_warned(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "val.de.gz", ["ein Hund " * 30] + ["ein Hund"] * 39)
    with pytest.warns(UserWarning, match=r"val: 1 sentences longer than 12 tokens were truncated"):
        data = _setup(dataset="multi30k", path=str(folder), max_length=12)
    assert len(data.splits["val"].source[0]) == 12 and data.splits["val"].truncated == 1


def test_tsv_split_by_fractions(tmp_path):
    path = _write(tmp_path / "pairs.tsv", [f"quelle {i}\tsource {i}" for i in range(100)])
    data = _setup(dataset="tsv", path=str(path), val_fraction=0.1, test_fraction=0.2)
    sizes = {name: len(d) for name, d in data.splits.items()}
    assert sizes == {"val": 10, "test": 20, "train": 70}
    _write(path, ["quelle ohne tab"])
    with pytest.raises(ValueError, match=r"pairs\.tsv:1: expected source<TAB>target"):
        _setup(dataset="tsv", path=str(path))


def test_hugging_face_dataset_from_a_local_folder(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        rows = [{"translation": {"de": f"ein Haus {i}", "en": f"a house {i}"}} for i in range(20)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = _setup(dataset="hf", hf_dataset=str(folder))
    assert len(data.splits["val"]) == 20 and data.splits["val"][2][3:] == ("ein Haus 2", "a house 2")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_tokenizers_put_specials_first_and_round_trip(kind, tmp_path):
    texts = [english_number(n) for n in range(300)] + [german_number(n) for n in range(300)]
    tokenizer = train_tokenizer(texts, kind, 80)
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>")] == [PAD, BOS, EOS, 3]
    assert tokenizer.decode(tokenizer.encode("drei hundert zwölf").ids) == "drei hundert zwölf"
    tokenizer.save(str(tmp_path / "tok.json"))
    data = _setup(tokenizer_file=str(tmp_path / "tok.json"), generated_sizes=(50, 10, 10))
    assert data.tokenizer.get_vocab_size() == tokenizer.get_vocab_size()


@pytest.mark.parametrize(("options", "message"), [
    ({"dataset": "wmt"}, r"--data\.dataset is 'wmt'; expected one of generated, multi30k, tsv, hf"),
    ({"dataset": "tsv"}, r"dataset 'tsv' needs --data\.path"),
    ({"dataset": "hf"}, r"dataset 'hf' needs --data\.hf_dataset"),
    ({"empty_lines": "drop"}, r"--data\.empty_lines is 'drop'; expected skip or error"),
    ({"tokenizer": "wordpiece"}, r"--data\.tokenizer is 'wordpiece'; expected bpe or unigram"),
    ({"vocab_size": 0}, r"--data\.vocab_size is 0; expected more than 4: the special tokens <pad>, <bos>"),
    ({"vocab_size": 4}, r"--data\.vocab_size is 4; expected more than 4"),
    ({"max_length": 0}, r"--data\.max_length is 0; expected at least 1 token"),
    ({"max_length": -3}, r"--data\.max_length is -3; expected at least 1 token"),
    ({"batch_size": 0}, r"--data\.batch_size is 0; expected at least 1"),
    ({"num_workers": -1}, r"--data\.num_workers is -1; expected 0 or more"),
    ({"generated_sizes": (300, 0, 41)}, r"--data\.generated_sizes is \(300, 0, 41\); expected at least 1 pair in each"),
    ({"generated_sizes": (0, 41, 41)}, r"--data\.generated_sizes is \(0, 41, 41\)"),
    ({"val_fraction": 0.0}, r"--data\.val_fraction is 0\.0; expected in \(0, 1 - test_fraction\)"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, r"--data\.val_fraction is 0\.6"),
    ({"test_fraction": -0.1}, r"--data\.test_fraction is -0\.1; expected at least 0"),
    ({"test_split": "test_2019"}, r"--data\.test_split is 'test_2019'; expected one of test_2016_flickr"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(UserError, match=message):
        TranslationDataModule(**options)


@pytest.mark.parametrize(("options", "message"), [
    ({"path": "pairs.tsv"}, r"--data\.path does not apply to --data\.dataset generated; it is read by dataset "
                            r"multi30k and tsv"),
    ({"dataset": "hf", "hf_dataset": "wmt16", "path": "x"}, r"--data\.path does not apply to --data\.dataset hf"),
    ({"dataset": "tsv", "path": "p.tsv", "hf_dataset": "wmt16"}, r"--data\.hf_dataset does not apply to "
                                                                 r"--data\.dataset tsv; it is read by dataset hf"),
    ({"dataset": "multi30k", "hf_config": "de-en"}, r"--data\.hf_config does not apply to --data\.dataset multi30k"),
    ({"test_split": "val"}, r"--data\.test_split does not apply to --data\.dataset generated; it is read by dataset "
                            r"multi30k"),
    ({"dataset": "multi30k", "val_fraction": 0.1}, r"--data\.val_fraction does not apply to --data\.dataset multi30k; "
                                                   r"it is read by dataset tsv"),
    ({"dataset": "hf", "hf_dataset": "wmt16", "test_fraction": 0.0}, r"--data\.test_fraction does not apply to "
                                                                     r"--data\.dataset hf"),
    ({"source_lang": "fr"}, r"--data\.source_lang is 'fr', but the generated pairs are English \(en\) -> German"),
    ({"target_lang": "en"}, r"--data\.target_lang is 'en', but the generated pairs are English \(en\) -> German"),
])
def test_options_the_dataset_does_not_read_are_named(options, message):
    with pytest.raises(UserError, match=message):
        TranslationDataModule(**options)


@pytest.mark.parametrize(("line", "found"), [
    ("quelle\tsource\textra", "3 fields"),
    ("quelle\tsource\t", "3 fields"),
    ("a\tb\tc\td", "4 fields"),
    ("quelle ohne tab", r"1 field \(no tab\)"),
])
def test_tsv_lines_need_exactly_two_fields(tmp_path, line, found):
    path = _write(tmp_path / "pairs.tsv", [f"quelle {i}\tsource {i}" for i in range(20)] + [line])
    with pytest.raises(UserError, match=rf"pairs\.tsv:21: expected source<TAB>target \(2 tab-separated fields\), "
                                        rf"found {found}"):
        _setup(dataset="tsv", path=str(path))


def _tokenizer_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files given as --data.tokenizer_file that are not a usable tokenizer, and what the error says of each."""
    good = train_tokenizer([english_number(n) for n in range(50)], "bpe", 60).to_str()
    specials_only = json.loads(good)
    specials_only["model"].update(vocab={token: i for i, token in enumerate(SPECIALS)}, merges=[])
    swapped = json.loads(good)
    for entry in swapped["added_tokens"]:
        entry["id"] = {0: 1, 1: 0}.get(entry["id"], entry["id"])
    vocab = swapped["model"]["vocab"]
    vocab["<pad>"], vocab["<bos>"] = vocab["<bos>"], vocab["<pad>"]
    files = {
        "garbage.json": (bytes(range(128, 256)), "not UTF-8 text"),
        "empty.json": (b"", "not a Hugging Face tokenizers JSON file"),
        "half.json": (good[: len(good) // 2].encode(), "not a Hugging Face tokenizers JSON file"),
        "other.json": (json.dumps({"name": "not a tokenizer"}).encode(), "not a Hugging Face tokenizers JSON file"),
        "specials.json": (json.dumps(specials_only).encode(), "the vocabulary holds only the special tokens"),
        "swapped.json": (json.dumps(swapped).encode(), "token '<pad>' must have id 0, has 1"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: (folder / name, message) for name, (_, message) in files.items()} | {
        "missing.json": (folder / "missing.json", "does not exist"), "folder": (folder, "is a folder")}


def test_bad_tokenizer_files_are_named(tmp_path):
    for name, (path, message) in _tokenizer_files(tmp_path).items():
        with pytest.raises(UserError, match=rf"--data\.tokenizer_file {re.escape(str(path))}: .*{message}"):
            _setup(tokenizer_file=str(path), generated_sizes=(50, 10, 10))
        assert name


@pytest.mark.parametrize("vocab_size", [5, 10, 20])
def test_a_unigram_vocabulary_too_small_for_the_characters_names_the_option(vocab_size):
    with pytest.raises(UserError, match=rf"--data\.vocab_size {vocab_size} is too small for a unigram vocabulary"):
        _setup(tokenizer="unigram", vocab_size=vocab_size, generated_sizes=(50, 10, 10))


def test_splits_left_empty_say_what_emptied_them(tmp_path):
    empty_sides = _write(tmp_path / "sides.tsv", [f"quelle {i}\t" for i in range(30)])
    with pytest.raises(UserError, match=r"sides\.tsv: no sentence pairs: all 30 have an empty side \(dropped by "
                                        r"--data\.empty_lines skip\)"):
        _setup(dataset="tsv", path=str(empty_sides))
    with pytest.raises(UserError, match=r"nothing\.tsv: no sentence pairs: no lines"):
        _setup(dataset="tsv", path=str(_write(tmp_path / "nothing.tsv", [])))
    one = _write(tmp_path / "one.tsv", ["quelle\tsource"])
    with pytest.raises(UserError, match=r"one\.tsv: the test split is empty: of 1 pairs, --data\.val_fraction 0\.05 "
                                        r"and --data\.test_fraction 0\.05 leave none for it"):
        _setup(dataset="tsv", path=str(one))
    pairs = _write(tmp_path / "pairs.tsv", [f"quelle {i}\tsource {i}" for i in range(40)])
    with pytest.raises(UserError, match=r"the test split is empty: of 40 pairs, .*--data\.test_fraction 0\.0 leave"):
        _setup(dataset="tsv", path=str(pairs), test_fraction=0.0)
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "val.de.gz", [])
    _write(folder / "val.en.gz", [])
    with pytest.raises(UserError, match=r"val\.de\.gz and .*val\.en\.gz: no sentence pairs: no lines"):
        _setup(dataset="multi30k", path=str(folder))
    _write(folder / "val.de.gz", [""] * 3)
    _write(folder / "val.en.gz", ["a dog"] * 3)
    with pytest.raises(UserError, match=r"val\.de\.gz and .*val\.en\.gz: no sentence pairs: all 3 have an empty"):
        _setup(dataset="multi30k", path=str(folder))


@pytest.mark.parametrize("max_length", [1, 2, 3])
def test_a_max_length_that_truncates_every_pair_names_the_option(tmp_path, max_length):
    with pytest.raises(UserError, match=rf"train: --data\.max_length {max_length} truncates every sentence pair; "
                                        r"the shortest needs \d+ tokens"):
        _setup(dataset="multi30k", path=str(_multi30k(tmp_path / "m30k")), max_length=max_length)


def _predicting(**options) -> TranslationDataModule:
    """A data module for predict, with the tokenizer a checkpoint would bring."""
    data = TranslationDataModule(**options)
    data.tokenizer = train_tokenizer([english_number(n) for n in range(50)], "bpe", 60)
    data.setup("predict")
    return data


def test_nothing_to_translate_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UserError, match=r"--data\.predict_path - \(standard input\): no sentence to translate "
                                        r"\(0 lines, all blank\)"):
        _predicting()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    with pytest.raises(UserError, match=r"standard input\): no sentence to translate \(2 lines, all blank\)"):
        _predicting()
    for name, lines, message in (("empty.txt", [], r"\(0 lines"), ("blank.txt", ["", " ", "\t"], r"\(3 lines")):
        path = _write(tmp_path / name, lines)
        with pytest.raises(UserError, match=rf"--data\.predict_path {re.escape(str(path))}: no sentence to translate "
                                            + message):
            _predicting(predict_path=str(path))
    for path, message in ((tmp_path / "missing.txt", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(UserError, match=rf"--data\.predict_path {re.escape(str(path))}: {message}"):
            _predicting(predict_path=str(path))
    assert len(_predicting(predict_path=str(_write(tmp_path / "ok.txt", ["", "one", ""]))).splits["predict"]) == 1


def _checkpoint(path: Path, languages: list | None, kind: str = "bpe") -> str:
    """A checkpoint file that holds only the artefacts the data reads: a tokenizer and (unless None) languages."""
    tokenizer = train_tokenizer([f"ein Hund läuft {i}" for i in range(40)] + [f"a dog runs {i}" for i in range(40)],
                                kind, 60)
    artefacts = {"tokenizer": tokenizer.to_str()} | ({} if languages is None else {"languages": languages})
    torch.save({"artefacts": artefacts}, path)
    return str(path)


def _restoring(checkpoint: str, **options) -> TranslationDataModule:
    data = TranslationDataModule(**{"batch_size": 8} | options)
    data.checkpoint_path = checkpoint
    data.setup("test")
    return data


def test_a_checkpoint_with_data_it_was_not_trained_for_is_named(tmp_path):
    folder = str(_multi30k(tmp_path / "m30k"))
    de_en = _checkpoint(tmp_path / "de-en.ckpt", ["de", "en"])
    for options, message in (
        ({}, r"translates de -> en, but the data options say en -> de \(--data\.dataset generated"),
        ({"dataset": "multi30k", "path": folder, "source_lang": "en", "target_lang": "de"},
         r"translates de -> en, but the data options say en -> de \(--data\.dataset multi30k"),
        ({"dataset": "multi30k", "path": folder, "tokenizer": "unigram"},
         r"was trained with a bpe tokenizer, but --data\.tokenizer is 'unigram'"),
    ):
        with pytest.raises(UserError, match=rf"checkpoint {re.escape(de_en)} {message}"):
            _restoring(de_en, **{"generated_sizes": (50, 10, 10)} | options)
    other = _write(tmp_path / "other.json", [train_tokenizer(["x y z"] * 5, "bpe", 60).to_str()])
    with pytest.raises(UserError, match=rf"--data\.tokenizer_file {re.escape(str(other))} is not the tokenizer "
                                        rf"checkpoint {re.escape(de_en)} was trained with"):
        _restoring(de_en, dataset="multi30k", path=folder, tokenizer_file=str(other))
    unigram = _checkpoint(tmp_path / "unigram.ckpt", ["de", "en"], "unigram")
    with pytest.raises(UserError, match=r"unigram\.ckpt was trained with a unigram tokenizer, but --data\.tokenizer "
                                        r"is 'bpe'"):
        _restoring(unigram, dataset="multi30k", path=folder)
    broken = tmp_path / "broken.ckpt"
    torch.save({"artefacts": {"tokenizer": "{not json", "languages": ["de", "en"]}}, broken)
    with pytest.raises(UserError, match=r"broken\.ckpt: its tokenizer: not a Hugging Face tokenizers JSON file"):
        _restoring(str(broken), dataset="multi30k", path=folder)
    # what agrees passes: the same options, a checkpoint older than recorded languages, an unlabelled tsv file
    assert len(_restoring(de_en, dataset="multi30k", path=folder).splits["test"]) == 40
    assert len(_restoring(_checkpoint(tmp_path / "old.ckpt", None), dataset="multi30k", path=folder,
                          source_lang="en", target_lang="de").splits["test"]) == 40
    tsv = _write(tmp_path / "pairs.tsv", [f"quelle {i}\tsource {i}" for i in range(40)])
    assert len(_restoring(de_en, dataset="tsv", path=str(tsv)).splits["test"]) == 2


def test_collate_pads_and_shifts():
    batch = collate([(0, [5, 6, 7], [8, 9], "a", "b"), (1, [5], [8, 9, 10, 11], "c", "d")])
    assert batch["source"].tolist() == [[5, 6, 7], [5, PAD, PAD]]
    assert batch["source_lengths"].tolist() == [3, 1]
    assert batch["target_in"].tolist() == [[BOS, 8, 9, PAD, PAD], [BOS, 8, 9, 10, 11]]
    assert batch["target_out"].tolist() == [[8, 9, EOS, PAD, PAD], [8, 9, 10, 11, EOS]]


def _dataset(count: int = 203) -> PairDataset:
    texts = [english_number(n) for n in range(count)]
    return PairDataset(texts, texts, train_tokenizer(texts, "bpe", 60), 64, "test")


@pytest.mark.parametrize("shuffle", [True, False])
def test_buckets_cut_padding_and_split_evenly_across_processes(shuffle):
    dataset = _dataset()
    streams = []
    for rank in range(2):
        streams.append(list(BucketSampler(dataset, batch_size=8, shuffle=shuffle, seed=1, num_replicas=2, rank=rank)))
    assert len(streams[0]) == len(streams[1])
    assert set(streams[0]) | set(streams[1]) == set(range(len(dataset)))  # every sentence, some twice (padding)
    padding = sum(max(map(dataset.length, b)) * len(b) - sum(map(dataset.length, b))
                  for s in streams for b in (s[i : i + 8] for i in range(0, len(s), 8)))
    shuffled = list(range(len(dataset)))
    random.Random(0).shuffle(shuffled)
    unsorted = sum(max(map(dataset.length, b)) * len(b) - sum(map(dataset.length, b))
                   for b in (shuffled[i : i + 8] for i in range(0, len(dataset), 8)))
    assert padding < unsorted / 5
