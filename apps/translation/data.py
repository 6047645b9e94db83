"""Sentence pairs for translation: generated numbers, Multi30k, any tab-separated file, Hugging Face datasets.

Text becomes token ids with a Hugging Face ``tokenizers`` BPE or unigram model trained on the training split (both
languages, one vocabulary), or loaded from a tokenizer file; the model stores it in its checkpoints, so a checkpoint
alone can translate. Batches group sentences of similar length (BucketSampler) to cut padding, also under DDP.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from apps.common.data import AppData
from apps.translation.sampler import BucketSampler
from apps.translation.text import (
    BOS,
    DATASETS,
    EOS,
    PAD,
    check_tokenizer,
    generated_pairs,
    multi30k_file,
    pair_lines,
    read_lines,
    train_tokenizer,
)

# ------------------------------------------------------------------------------------------------ the dataset


class PairDataset(Dataset):
    """Token ids of sentence pairs; items are (index, source ids, target ids, source text, target text)."""

    def __init__(self, source: list[str], target: list[str], tokenizer: Tokenizer, max_length: int, name: str):
        self.source_text, self.target_text = source, target
        self.source = [e.ids for e in tokenizer.encode_batch(source)]
        self.target = [e.ids for e in tokenizer.encode_batch(target)] if target else [[] for _ in source]
        self.truncated = 0
        for ids in (self.source, self.target):
            for i, seq in enumerate(ids):
                if len(seq) > max_length:
                    ids[i] = seq[:max_length]
                    self.truncated += 1
        if self.truncated:
            rank_zero_warn(f"{name}: {self.truncated} sentences longer than {max_length} tokens were truncated "
                           f"(--data.max_length)")

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        return i, self.source[i], self.target[i], self.source_text[i], self.target_text[i] if self.target_text else ""

    def length(self, i: int) -> int:
        return max(len(self.source[i]), len(self.target[i]))


def collate(items) -> dict:
    """Pads a list of items: source (B, S) with lengths, decoder input <bos> y and output y <eos> (B, T)."""
    index, source, target, source_text, target_text = zip(*items, strict=True)
    B = len(items)
    S = max(len(s) for s in source)
    T = max(len(t) for t in target) + 1
    src = torch.full((B, S), PAD, dtype=torch.long)
    tgt_in = torch.full((B, T), PAD, dtype=torch.long)
    tgt_out = torch.full((B, T), PAD, dtype=torch.long)
    for b, (s, t) in enumerate(zip(source, target, strict=True)):
        src[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        tgt_in[b, : len(t) + 1] = torch.tensor([BOS, *t], dtype=torch.long)
        tgt_out[b, : len(t) + 1] = torch.tensor([*t, EOS], dtype=torch.long)
    return {
        "index": torch.tensor(index),
        "source": src,
        "source_lengths": torch.tensor([max(len(s), 1) for s in source]),
        "target_in": tgt_in,
        "target_out": tgt_out,
        "source_text": list(source_text),
        "target_text": list(target_text),
    }


class TranslationDataModule(AppData):
    """Sentence pairs, a subword tokenizer, and length-bucketed batches."""

    collate = staticmethod(collate)

    def __init__(
        self,
        dataset: str = "generated",
        path: str | None = None,
        source_lang: str = "de",
        target_lang: str = "en",
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        tokenizer: str = "bpe",
        vocab_size: int = 8000,
        tokenizer_file: str | None = None,
        max_length: int = 64,
        empty_lines: str = "skip",
        batch_size: int = 64,
        num_workers: int = 0,
        generated_sizes: tuple[int, int, int] = (20000, 1000, 1000),
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        test_split: str = "test_2016_flickr",
        cache_dir: str = "~/.cache/rnn-apps",
        predict_path: str = "-",
        seed: int = 0,
    ) -> None:
        """
        Args:
            dataset: "generated" (English -> German numbers, offline), "multi30k", "tsv" or "hf".
            path: multi30k: folder with {train,val,test_2016_flickr}.{de,en}.gz (None: download); tsv: the file.
            source_lang: language translated from (multi30k, hf).
            target_lang: language translated into (multi30k, hf).
            hf_dataset: Hugging Face dataset name or local folder, for dataset "hf".
            hf_config: the Hugging Face dataset's configuration name, if it has several.
            tokenizer: "bpe" or "unigram", trained on both sides of the training split.
            vocab_size: subword vocabulary size (one vocabulary for both languages).
            tokenizer_file: a tokenizers JSON file to use instead of training one.
            max_length: longest sentence in tokens; longer ones are truncated, counted and warned about.
            empty_lines: "skip" pairs with an empty side (counted and reported) or "error".
            batch_size: sentences per batch (per process).
            num_workers: DataLoader worker processes.
            generated_sizes: train, validation and test pairs of the generated dataset.
            val_fraction: share of a tsv file held out for validation.
            test_fraction: share of a tsv file held out for testing.
            test_split: the Multi30k files used as the test split: test_2016_flickr, test_2017_flickr,
                test_2017_mscoco, test_2018_flickr, or val (to decode the validation set with beam search).
            cache_dir: where downloads are kept.
            predict_path: text file to translate, one sentence per line; "-" reads standard input.
            seed: seed of the generated pairs, the tsv split and the batch order.
        """
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        if empty_lines not in ("skip", "error"):
            raise ValueError(f"empty_lines must be 'skip' or 'error', got {empty_lines!r}")
        if dataset == "tsv" and not path:
            raise ValueError("dataset 'tsv' needs --data.path: a file of source<TAB>target lines")
        if dataset == "hf" and not hf_dataset:
            raise ValueError("dataset 'hf' needs --data.hf_dataset: a Hugging Face dataset name or folder")
        self.tokenizer: Tokenizer | None = None

    # ------------------------------------------------------------------ raw text

    def read_splits(self, names: tuple[str, ...]) -> dict[str, tuple[list[str], list[str]]]:
        """Source and target sentences of the named splits (train, val, test)."""
        hp = self.hparams
        if hp.dataset == "generated":
            splits = generated_pairs(dict(zip(("train", "val", "test"), hp.generated_sizes, strict=True)), hp.seed)
        elif hp.dataset == "multi30k":
            directory = None if hp.path is None else Path(hp.path).expanduser()
            files = {"train": "train", "val": "val", "test": hp.test_split}
            splits = {split: self._paired(*(multi30k_file(directory, files[split], lang, hp.cache_dir)
                                            for lang in (hp.source_lang, hp.target_lang)))
                      for split in names}
        elif hp.dataset == "tsv":
            splits = self._read_tsv(Path(hp.path).expanduser())
        else:
            splits = self._read_hf()
        return {name: splits[name] for name in names}

    def _paired(self, source_file: Path, target_file: Path) -> tuple[list[str], list[str]]:
        source, target, report = pair_lines(
            read_lines(source_file), read_lines(target_file), (str(source_file), str(target_file)),
            self.hparams.empty_lines,
        )
        if report.empty:
            rank_zero_warn(f"skipped {report.empty} pairs with an empty line, first at {', '.join(report.first_empty)}")
        return source, target

    def _read_tsv(self, path: Path) -> dict[str, tuple[list[str], list[str]]]:
        if not path.is_file():
            raise FileNotFoundError(f"tsv file {path} does not exist")
        source, target = [], []
        for number, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                source.append("")
                target.append("")
                continue
            columns = line.split("\t")
            if len(columns) < 2:
                raise ValueError(f"{path}:{number}: expected source<TAB>target, found no tab")
            source.append(columns[0])
            target.append(columns[1])
        source, target, report = pair_lines(source, target, (str(path), str(path)), self.hparams.empty_lines)
        if report.empty:
            rank_zero_warn(f"skipped {report.empty} pairs with an empty side, first at {', '.join(report.first_empty)}")
        order = list(range(len(source)))
        random.Random(self.hparams.seed).shuffle(order)
        n_val = math.ceil(len(order) * self.hparams.val_fraction)
        n_test = math.ceil(len(order) * self.hparams.test_fraction)
        parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        return {split: ([source[i] for i in idx], [target[i] for i in idx]) for split, idx in parts.items()}

    def _read_hf(self) -> dict[str, tuple[list[str], list[str]]]:
        import datasets  # imported here: it is slow to import and only this source needs it

        hp = self.hparams
        data = datasets.load_dataset(hp.hf_dataset, hp.hf_config)
        names = {"train": ("train",), "val": ("validation", "val", "dev"), "test": ("test",)}
        splits = {}
        for split, candidates in names.items():
            found = next((c for c in candidates if c in data), None)
            if found is None:
                raise ValueError(f"Hugging Face dataset {hp.hf_dataset!r} has splits {list(data)}; expected one of "
                                 f"{candidates} for {split}")
            rows = data[found]
            if "translation" in rows.column_names:
                pairs = rows["translation"]
                source, target = [p[hp.source_lang] for p in pairs], [p[hp.target_lang] for p in pairs]
            elif {hp.source_lang, hp.target_lang} <= set(rows.column_names):
                source, target = rows[hp.source_lang], rows[hp.target_lang]
            else:
                raise ValueError(f"Hugging Face dataset {hp.hf_dataset!r} split {found!r} has columns "
                                 f"{rows.column_names}; expected 'translation' or {hp.source_lang!r} and "
                                 f"{hp.target_lang!r}")
            splits[split] = self._paired_texts(source, target, f"{hp.hf_dataset}[{found}]")
        return splits

    def _paired_texts(self, source, target, name) -> tuple[list[str], list[str]]:
        source, target, report = pair_lines(list(source), list(target), (name, name), self.hparams.empty_lines)
        if report.empty:
            rank_zero_warn(f"{name}: skipped {report.empty} pairs with an empty side")
        return source, target

    # ------------------------------------------------------------------ setup

    def build_tokenizer(self, train_source: list[str], train_target: list[str]) -> Tokenizer:
        hp = self.hparams
        if hp.tokenizer_file:
            path = Path(hp.tokenizer_file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer file {path} does not exist")
            return check_tokenizer(Tokenizer.from_file(str(path)), str(path))
        return train_tokenizer(train_source + train_target, hp.tokenizer, hp.vocab_size)

    def artefacts(self) -> dict:
        return {"tokenizer": self.tokenizer.to_str()}

    def make_splits(self, names: tuple[str, ...]) -> dict[str, PairDataset]:
        hp = self.hparams
        saved = self.saved_artefacts()
        if self.tokenizer is None and saved:  # the ids must mean what they meant when the model was trained
            self.tokenizer = check_tokenizer(Tokenizer.from_str(saved["tokenizer"]), self.checkpoint_path)
        if names == ("predict",):
            if self.tokenizer is None:
                raise RuntimeError("predict needs a trained model: pass --ckpt_path (the tokenizer is in it)")
            lines = sys.stdin.read().splitlines() if hp.predict_path == "-" else read_lines(Path(hp.predict_path))
            lines = [line.strip() for line in lines if line.strip()]
            return {"predict": PairDataset(lines, [], self.tokenizer, hp.max_length, hp.predict_path)}
        texts = self.read_splits(names if self.tokenizer else tuple(dict.fromkeys(("train", *names))))
        if self.tokenizer is None:
            self.tokenizer = self.build_tokenizer(*texts["train"])
        splits = {split: PairDataset(source, target, self.tokenizer, hp.max_length, split)
                  for split, (source, target) in texts.items()}
        rank_zero_info(
            f"translation data: {hp.dataset} ({', '.join(f'{s} {len(d)}' for s, d in splits.items())} pairs), "
            f"vocabulary {self.tokenizer.get_vocab_size()}"
        )
        return splits

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """AppData's loader with length buckets (BucketSampler) in place of plain shuffling."""
        dataset = self.splits[split]
        sampler = BucketSampler(dataset, self.hparams.batch_size, shuffle=shuffle, seed=self.hparams.seed)
        return DataLoader(
            dataset, batch_size=self.hparams.batch_size, sampler=sampler, collate_fn=self.collate,
            num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0,
        )

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["predict"], batch_size=self.hparams.batch_size, collate_fn=self.collate)
