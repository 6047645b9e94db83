"""Translation data: generated pairs, Multi30k files, tsv and Hugging Face sources, bad input, bucketing."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from apps.translation.data import PairDataset, TranslationDataModule, collate
from apps.translation.sampler import BucketSampler
from apps.translation.text import BOS, EOS, PAD, english_number, generated_pairs, german_number, train_tokenizer


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
    with pytest.raises(FileNotFoundError, match=r"Multi30k split file .*val\.en\.gz is missing"):
        _setup(dataset="multi30k", path=str(folder))


def test_line_count_mismatch_names_both_counts(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "train.en.gz", ["a dog"] * 39)
    with pytest.raises(ValueError, match=r"train\.de\.gz has 40 lines but .*train\.en\.gz has 39"):
        _setup(dataset="multi30k", path=str(folder))


def test_empty_lines_skipped_and_counted_or_an_error(tmp_path):
    folder = _multi30k(tmp_path / "m30k")
    _write(folder / "train.de.gz", ["ein Hund"] * 10 + [""] + ["ein Hund"] * 29)
    with pytest.warns(UserWarning, match=r"skipped 1 pairs with an empty line, first at .*train\.de\.gz:11"):
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


def test_bad_options():
    with pytest.raises(ValueError, match="unknown dataset 'wmt'"):
        TranslationDataModule(dataset="wmt")
    with pytest.raises(ValueError, match=r"dataset 'tsv' needs --data\.path"):
        TranslationDataModule(dataset="tsv")
    with pytest.raises(ValueError, match="empty_lines must be 'skip' or 'error'"):
        TranslationDataModule(empty_lines="drop")


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
