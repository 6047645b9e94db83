"""Language-model text as token streams for truncated backpropagation through time.

A split's tokens are cut into contiguous streams; batch k holds chunk k (``bptt`` tokens) of each, so the model
carries each stream's state from batch to batch. Training reads ``batch_size`` streams per process; validation and
test ``batch_size`` streams in all, shared out among the processes, so that their metrics (every token once) are the
same on any number of processes. The text and the tokenizer: text.py.
"""

from __future__ import annotations

import inspect
import math
import sys
import sysconfig
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from apps.common.data import AppData, fetch, is_url
from apps.common.errors import UserError, check_options
from apps.language_model.text import (
    DEFAULT_VOCAB_SIZE,
    SMALLEST_VOCABULARY,
    TOKENIZERS,
    Tokens,
    encode,
    hf_texts,
    read_text,
    split_by_ratios,
    stdlib_texts,
    tokenizer_kind,
    train_tokenizer,
)

IGNORE = -100  # the target of padding: no loss


class Streams(Dataset):
    """A split's tokens as ``streams`` contiguous rows read ``bptt`` tokens at a time, by the process that reads
    ``rows`` of them: its batch k is chunk k of its rows (inputs, next tokens as targets, the characters those cover;
    record ids k * streams + row). With ``whole`` the rows cover every token (padded at the end of the text, the
    padding's targets ignored); without, they are cut to one length and the few tokens left over are not read."""

    def __init__(self, tokens: Tokens, streams: int, rows: range, bptt: int, whole: bool) -> None:
        n = len(tokens.ids) - 1
        length = math.ceil(n / streams) if whole else n // streams

        def lay_out(values: Tensor, padding: int) -> Tensor:
            values = F.pad(values[: streams * length], (0, max(streams * length - n, 0)), value=padding)
            return values.view(streams, length)[rows.start : rows.stop]

        self.input, self.target = lay_out(tokens.ids[:-1], 0), lay_out(tokens.ids[1:], IGNORE)
        self.chars, self.streams, self.rows, self.bptt = lay_out(tokens.chars[1:], 0), streams, torch.tensor(rows), bptt

    def __len__(self) -> int:
        return math.ceil(self.input.shape[1] / self.bptt)

    def __getitem__(self, k: int) -> dict:
        chunk = slice(k * self.bptt, (k + 1) * self.bptt)
        return {"index": k * self.streams + self.rows, "input": self.input[:, chunk], "target": self.target[:, chunk],
                "chars": self.chars[:, chunk].sum(1)}


class LanguageModelData(AppData):
    """Text as token streams for truncated BPTT, and prompts for predict to continue."""

    def __init__(self, path: str | None = None, hf_dataset: str | None = None, hf_config: str | None = None,
                 text_column: str = "text", tokenizer: str = "char", vocab_size: int | None = None, bptt: int = 128,
                 batch_size: int = 32, val_ratio: float = 0.05, test_ratio: float = 0.05,
                 stdlib_chars: int = 1_000_000, predict_path: str | None = None, prompt: str = "\n",
                 cache_dir: str = "~/.cache/rnn-apps", sha256: str | None = None) -> None:
        """
        Args:
            path: a text file, a folder of them or a URL (downloaded once into cache_dir), cut by the ratios; None:
                hf_dataset if given, else the standard library's source files.
            hf_dataset: a Hugging Face dataset (name or folder): its train, validation and test splits, or its train
                split cut by the ratios.
            hf_config: the Hugging Face dataset's configuration.
            text_column: the Hugging Face dataset's column of text.
            tokenizer: char (each character a token), bpe (byte-level BPE) or word.
            vocab_size: tokens a bpe or word tokenizer learns (None: 8000); char takes every character of the text.
            bptt: tokens per chunk: how far back through time training propagates gradients.
            batch_size: streams read side by side (in training, per process).
            val_ratio: share of the text (of stdlib_chars) for validation, after the training text.
            test_ratio: share for test, last; 0 tests on the validation text.
            stdlib_chars: characters of the standard library's source files to read (whole files, about).
            predict_path: prompts to continue, one a line ("-": standard input); None: prompt.
            prompt: the prompt to continue when predict_path is None.
            cache_dir: where downloads are kept.
            sha256: expected SHA-256 of the file at path.
        """
        super().__init__()
        smallest = SMALLEST_VOCABULARY.get(tokenizer, 1)
        defaults = {name: p.default for name, p in inspect.signature(LanguageModelData.__init__).parameters.items()}
        check_options({
            "tokenizer": (tokenizer, tokenizer in TOKENIZERS, "char, bpe or word"),
            "vocab_size": (vocab_size, vocab_size is None or (tokenizer != "char" and vocab_size >= smallest),
                           "to be left out with --data.tokenizer char (it takes every character of the text)"
                           if tokenizer == "char" else f"at least {smallest} for --data.tokenizer {tokenizer}"),
            "bptt": (bptt, bptt >= 1, "at least 1"),
            "val_ratio": (val_ratio, val_ratio > 0 and val_ratio + test_ratio < 1, "in (0, 1 - test_ratio)"),
            "test_ratio": (test_ratio, test_ratio >= 0, "at least 0"),
            "stdlib_chars": (stdlib_chars, stdlib_chars >= 1, "at least 1"),
            # options that the chosen text would ignore are a mistake: say so
            "hf_dataset": (hf_dataset, hf_dataset is None or path is None, "to be left out when --data.path is given"),
            "hf_config": (hf_config, hf_config is None or hf_dataset is not None, "only with --data.hf_dataset"),
            "text_column": (text_column, text_column == defaults["text_column"] or hf_dataset is not None,
                            "only with --data.hf_dataset"),
            "prompt": (prompt, prompt == defaults["prompt"] or predict_path is None,
                       "to be left out when --data.predict_path is given"),
            "sha256": (sha256, sha256 is None or (path is not None and not Path(path).expanduser().is_dir()),
                       "only with a --data.path file or URL"),
        })
        self.tokenizer: Tokenizer | None = None
        #: where the text comes from, and the options that cut it into splits (for messages)
        self.source = ""

    def read_texts(self) -> dict[str, str]:
        hp = self.hparams
        ratios = f"cut by --data.val_ratio={hp.val_ratio} and --data.test_ratio={hp.test_ratio}"
        if hp.path is not None:
            path = Path(hp.path).expanduser()
            if not is_url(hp.path) and not path.exists():
                raise UserError(f"--data.path {hp.path} does not exist; expected a text file, a folder or a URL")
            path = path if path.is_dir() else fetch(hp.path, hp.cache_dir, hp.sha256)
            texts, self.source = split_by_ratios(read_text(path), hp.val_ratio, hp.test_ratio), f"--data.path {path}"
            self.source += f" ({ratios})"
        elif hp.hf_dataset is not None:
            texts = hf_texts(hp.hf_dataset, hp.hf_config, hp.text_column, hp.val_ratio, hp.test_ratio)
            self.source = f"--data.hf_dataset {hp.hf_dataset} (its own splits, or its train split {ratios})"
        else:
            texts = stdlib_texts(hp.stdlib_chars, {"val": hp.val_ratio, "test": hp.test_ratio,
                                                   "train": 1 - hp.val_ratio - hp.test_ratio})
            self.source = (f"the standard library at {sysconfig.get_paths()['stdlib']} "
                           f"(--data.stdlib_chars={hp.stdlib_chars}, {ratios})")
        if not hp.test_ratio or "test" not in texts:
            texts["test"] = texts["val"]
        for split, text in texts.items():
            if len(text) < 2:
                raise UserError(f"{self.source}: the {split} text has {len(text)} characters, too few")
        return texts

    def artefacts(self) -> dict:
        return {"tokenizer": self.tokenizer.to_str()}

    def restore(self, saved: dict) -> Tokenizer:
        """The tokenizer of the checkpoint the command restores, if the data options describe it."""
        hp, where = self.hparams, f"checkpoint {self.checkpoint_path}"
        try:
            tokenizer = Tokenizer.from_str(saved["tokenizer"])
        except Exception as error:  # tokenizers raises bare Exceptions for text that is not a tokenizer
            raise UserError(f"{where}: its tokenizer is not a tokenizers JSON ({error})") from None
        kind, size = tokenizer_kind(tokenizer), tokenizer.get_vocab_size()
        if kind != hp.tokenizer:
            raise UserError(f"{where} was trained with a {kind} tokenizer, but --data.tokenizer is {hp.tokenizer!r}")
        if hp.vocab_size is not None and size > hp.vocab_size:
            raise UserError(f"{where} has a vocabulary of {size} tokens, more than --data.vocab_size {hp.vocab_size}")
        return tokenizer

    def make_splits(self, names: tuple[str, ...]) -> dict:
        hp, saved = self.hparams, self.saved_artefacts()
        if self.tokenizer is None and saved:  # the ids must mean what they meant when the model was trained
            self.tokenizer = self.restore(saved)
        if names == ("predict",):
            if self.tokenizer is None:
                raise UserError("predict needs a trained model: pass --ckpt_path (the tokenizer is in it)")
            return {"predict": self.prompts()}
        texts = self.read_texts()
        if self.tokenizer is None:
            self.tokenizer = train_tokenizer(texts["train"], hp.tokenizer, hp.vocab_size or DEFAULT_VOCAB_SIZE)
        splits = {name: encode(self.tokenizer, texts[name]) for name in names}
        for name, tokens in splits.items():  # too short a text fails here, before any training
            self.layout(name, tokens)
        rank_zero_info(f"language model data: {', '.join(f'{n} {len(s.ids)}' for n, s in splits.items())} tokens, "
                       f"vocabulary {self.tokenizer.get_vocab_size()}")
        return splits

    def prompts(self) -> list[dict]:
        hp = self.hparams
        if hp.predict_path is None:
            lines, source = [hp.prompt], "--data.prompt"
        elif hp.predict_path == "-":
            lines, source = sys.stdin.read().splitlines(), "--data.predict_path - (standard input)"
        else:
            path, source = Path(hp.predict_path).expanduser(), f"--data.predict_path {hp.predict_path}"
            if not path.is_file():
                raise UserError(f"{source}: {'is a folder' if path.is_dir() else 'does not exist'}; expected a text "
                                "file of prompts, one a line")
            lines = read_text(path).splitlines()
        prompts = [{"index": i, "prompt": line, "ids": self.tokenizer.encode(line).ids}
                   for i, line in enumerate(line for line in lines if line.strip() or hp.predict_path is None)]
        empty = [p["index"] + 1 for p in prompts if not p["ids"]]
        if not prompts or empty:
            raise UserError(f"{source}: " + (f"prompt {empty[0]} has no tokens" if empty else
                                             f"no prompt ({len(lines)} lines, all blank); expected one a line"))
        return prompts

    def layout(self, split: str, tokens: Tokens) -> tuple[int, range]:
        """How this process reads a split: the count of streams it is cut into, and this process's rows of them: in
        training ``batch_size`` streams of its own; in evaluation a contiguous share of ``batch_size`` streams in all
        (fewer when the text is short). A text too short for them is an error that names the split and options."""
        hp, trainer, training = self.hparams, self.trainer, split == "train"
        processes, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        targets = len(tokens.ids) - 1
        streams = hp.batch_size * processes if training else min(hp.batch_size, targets)
        share, extra = (hp.batch_size, 0) if training else divmod(streams, processes)
        rows = range(rank * share + min(rank, extra), (rank + 1) * share + min(rank + 1, extra))
        # the same test on every process, so that all of them stop (one alone would leave the others waiting)
        if hp.batch_size < processes and not training:
            raise UserError(f"--data.batch_size is {hp.batch_size}, fewer than the {processes} processes: evaluation "
                            "reads that many streams in all, one per process at least")
        if targets < streams or streams < processes:
            wanted = f"--data.batch_size={hp.batch_size} streams" if training else "one stream"
            raise UserError(f"{self.source}: the {split} text has {targets + 1} tokens, too few for {wanted} on each "
                            f"of {processes} process(es), 2 tokens a stream at least")
        return streams, rows

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """AppData's loader of train, val and test: this process's streams of the split (``layout``), batch after
        batch in order (never shuffled, whatever ``shuffle`` says)."""
        streams, rows = self.layout(split, self.splits[split])
        dataset = Streams(self.splits[split], streams, rows, self.hparams.bptt, whole=split != "train")
        # whole batches from the dataset, in order: a DistributedSampler of one replica, so that Lightning keeps it
        in_order = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False)
        return DataLoader(dataset, batch_size=None, sampler=in_order)

    def predict_dataloader(self) -> DataLoader:
        # a batch stays a list of prompts (their token lists differ in length): the model pads them
        return DataLoader(self.splits["predict"], batch_size=self.hparams.batch_size, collate_fn=list)
