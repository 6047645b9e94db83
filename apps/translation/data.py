"""Sentence pairs for translation: generated numbers, Multi30k, any tab-separated file, Hugging Face datasets.

Text becomes token ids with a Hugging Face ``tokenizers`` BPE or unigram model trained on the training split (both
languages, one vocabulary), or loaded from a tokenizer file; the model stores it in its checkpoints, so a checkpoint
alone can translate. Batches group sentences of similar length (BucketSampler) to cut padding, also under DDP.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from apps.common.data import AppData
from apps.common.errors import UserError, check_options
from apps.translation.sampler import BucketSampler
from apps.translation.text import (
    DATASETS,
    GENERATED_LANGUAGES,
    MULTI30K_TEST_SPLITS,
    generated_pairs,
    hf_pairs,
    multi30k_file,
    pair_lines,
    read_lines,
    read_tsv,
    sentences,
    split_by_fractions,
)
from apps.translation.tokenizer import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    TOKENIZERS,
    read_tokenizer,
    read_tokenizer_file,
    tokenizer_kind,
    train_tokenizer,
)

# ------------------------------------------------------------------------------------------------ the dataset


class PairDataset(Dataset):
    """Token ids of sentence pairs; items are (index, source ids, target ids, source text, target text)."""

    def __init__(self, source: list[str], target: list[str], tokenizer: Tokenizer, max_length: int, name: str):
        self.source_text, self.target_text = source, target
        self.source = [e.ids for e in tokenizer.encode_batch(source)]
        self.target = [e.ids for e in tokenizer.encode_batch(target)] if target else [[] for _ in source]
        needed = [max(len(s), len(t)) for s, t in zip(self.source, self.target, strict=True)]
        if min(needed, default=0) > max_length:  # every pair would lose its end: the option is wrong, not the data
            raise UserError(f"{name}: --data.max_length {max_length} truncates every sentence pair; the shortest "
                            f"needs {min(needed)} tokens")
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
        source_lang: str | None = None,
        target_lang: str | None = None,
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
            source_lang: language translated from: multi30k and hf (None: de), a label for tsv (recorded in
                checkpoints); the generated pairs are en.
            target_lang: language translated into: multi30k and hf (None: en), a label for tsv; generated: de.
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
        check_options({
            "dataset": (dataset, dataset in DATASETS, f"one of {', '.join(DATASETS)}"),
            "tokenizer": (tokenizer, tokenizer in TOKENIZERS, "bpe or unigram (or give --data.tokenizer_file)"),
            "vocab_size": (vocab_size, vocab_size > len(SPECIALS),
                           f"more than {len(SPECIALS)}: the special tokens {', '.join(SPECIALS)} and subwords"),
            "max_length": (max_length, max_length >= 1, "at least 1 token"),
            "empty_lines": (empty_lines, empty_lines in ("skip", "error"), "skip or error"),
            "generated_sizes": (generated_sizes, min(generated_sizes) >= 1,
                                "at least 1 pair in each of train, validation and test"),
            "val_fraction": (val_fraction, val_fraction > 0 and val_fraction + test_fraction < 1,
                             "in (0, 1 - test_fraction): the validation share of a tsv file"),
            "test_fraction": (test_fraction, test_fraction >= 0, "at least 0"),
            "test_split": (test_split, test_split in MULTI30K_TEST_SPLITS, f"one of {', '.join(MULTI30K_TEST_SPLITS)}"),
        })
        readers = {"path": ("multi30k", "tsv"), "hf_dataset": ("hf",), "hf_config": ("hf",),
                   "test_split": ("multi30k",), "val_fraction": ("tsv",), "test_fraction": ("tsv",)}
        defaults = inspect.signature(TranslationDataModule.__init__).parameters
        for option, datasets in readers.items():  # an option given that the dataset would ignore is a mistake: say so
            if self.hparams[option] != defaults[option].default and dataset not in datasets:
                raise UserError(f"--data.{option} does not apply to --data.dataset {dataset}; it is read by "
                                f"dataset {' and '.join(datasets)}")
        if dataset == "tsv" and not path:
            raise UserError("dataset 'tsv' needs --data.path: a file of source<TAB>target lines")
        if dataset == "hf" and not hf_dataset:
            raise UserError("dataset 'hf' needs --data.hf_dataset: a Hugging Face dataset name or folder")
        for option, given, language in zip(("source_lang", "target_lang"), (source_lang, target_lang),
                                           GENERATED_LANGUAGES, strict=True):
            if dataset == "generated" and given not in (None, language):
                raise UserError(f"--data.{option} is {given!r}, but the generated pairs are English (en) -> German "
                                f"(de); leave it out or give another --data.dataset")
        self.tokenizer: Tokenizer | None = None

    @property
    def languages(self) -> tuple[str | None, str | None]:
        """Source and target language of the data (None where a tsv file's are not labelled)."""
        hp = self.hparams
        if hp.dataset == "generated":
            return GENERATED_LANGUAGES
        if hp.dataset == "tsv":
            return hp.source_lang, hp.target_lang
        return hp.source_lang or "de", hp.target_lang or "en"

    # ------------------------------------------------------------------ raw text

    def read_splits(self, names: tuple[str, ...]) -> dict[str, tuple[list[str], list[str]]]:
        """Source and target sentences of the named splits (train, val, test), none of them empty."""
        hp = self.hparams
        if hp.dataset == "generated":
            splits = generated_pairs(dict(zip(("train", "val", "test"), hp.generated_sizes, strict=True)), hp.seed)
        elif hp.dataset == "multi30k":
            directory = None if hp.path is None else Path(hp.path).expanduser()
            files = {"train": "train", "val": "val", "test": hp.test_split}
            splits = {}
            for split in names:
                paths = [multi30k_file(directory, files[split], lang, hp.cache_dir) for lang in self.languages]
                splits[split] = pair_lines(*map(read_lines, paths), tuple(map(str, paths)), hp.empty_lines)
        elif hp.dataset == "tsv":
            path = Path(hp.path).expanduser()
            pairs = pair_lines(*read_tsv(path), (str(path), str(path)), hp.empty_lines)
            splits = split_by_fractions(pairs, hp.val_fraction, hp.test_fraction, hp.seed, str(path))
        else:
            splits = hf_pairs(hp.hf_dataset, hp.hf_config, self.languages, hp.empty_lines)
        return {name: splits[name] for name in names}

    # ------------------------------------------------------------------ setup

    def build_tokenizer(self, train_source: list[str], train_target: list[str]) -> Tokenizer:
        hp = self.hparams
        if hp.tokenizer_file:
            return read_tokenizer_file(Path(hp.tokenizer_file).expanduser())
        return train_tokenizer(train_source + train_target, hp.tokenizer, hp.vocab_size)

    def artefacts(self) -> dict:
        return {"tokenizer": self.tokenizer.to_str(), "languages": list(self.languages)}

    def restore(self, saved: dict) -> Tokenizer:
        """The tokenizer of the checkpoint the command restores, once the data options are found to agree with what
        the checkpoint was trained on: its languages, and its tokenizer (file or kind)."""
        hp, where = self.hparams, f"checkpoint {self.checkpoint_path}"
        tokenizer = read_tokenizer(saved["tokenizer"], f"{where}: its tokenizer")
        trained, ours = saved.get("languages", [None, None]), self.languages
        if any(a and b and a != b for a, b in zip(trained, ours, strict=True)):
            raise UserError(f"{where} translates {trained[0]} -> {trained[1]}, but the data options say {ours[0]} -> "
                            f"{ours[1]} (--data.dataset {hp.dataset}, --data.source_lang, --data.target_lang); give "
                            "the options it was trained with")
        if hp.tokenizer_file:
            given = read_tokenizer_file(Path(hp.tokenizer_file).expanduser())
            if json.loads(given.to_str()) != json.loads(tokenizer.to_str()):
                raise UserError(f"--data.tokenizer_file {hp.tokenizer_file} is not the tokenizer {where} was trained "
                                "with; leave it out (the checkpoint holds its tokenizer)")
        elif tokenizer_kind(tokenizer) != hp.tokenizer:
            raise UserError(f"{where} was trained with a {tokenizer_kind(tokenizer)} tokenizer, but --data.tokenizer "
                            f"is {hp.tokenizer!r}")
        return tokenizer

    def make_splits(self, names: tuple[str, ...]) -> dict[str, PairDataset]:
        hp = self.hparams
        saved = self.saved_artefacts()
        if self.tokenizer is None and saved:  # the ids must mean what they meant when the model was trained
            self.tokenizer = self.restore(saved)
        if names == ("predict",):
            if self.tokenizer is None:
                raise UserError("predict needs a trained model: pass --ckpt_path (the tokenizer is in it)")
            return {"predict": PairDataset(sentences(hp.predict_path), [], self.tokenizer, hp.max_length,
                                           f"--data.predict_path {hp.predict_path}")}
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
