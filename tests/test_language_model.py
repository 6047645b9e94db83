"""The language model: carried state, token streams under DDP, bits per character, sampling, DropConnect on every
backend, predict, and errors that name the option or file at fault."""

from __future__ import annotations

import io
import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from apps.common.errors import UserError
from apps.language_model import main
from apps.language_model.data import IGNORE, LanguageModelData
from apps.language_model.model import LanguageModel
from apps.language_model.text import encode, stdlib_texts, train_tokenizer

TEXT = "".join(f"line {i}: the quick brown fox jumps over {i % 7} lazy dogs.\n" for i in range(30))
FAST = ["--trainer.enable_progress_bar=false", "--data.stdlib_chars=20000", "--data.batch_size=4", "--data.bptt=16",
        "--model.embedding_size=16", "--model.hidden_size=16", "--model.num_layers=1", "--model.max_new_tokens=12"]


def prepared(tmp_path, text: str = TEXT, stage: str = "fit", **options) -> LanguageModelData:
    path = tmp_path / "text.txt"
    path.write_text(text)
    data = LanguageModelData(path=str(path), **{"val_ratio": 0.2, "test_ratio": 0.0, **options})
    data.setup(stage)
    return data


def model_for(data: LanguageModelData, seed: int = 0, **options) -> LanguageModel:
    torch.manual_seed(seed)
    model = LanguageModel(**{"embedding_size": 8, "hidden_size": 12, **options})
    model.adopt(data.artefacts())
    return model


def test_carried_state_training_equals_one_long_sequence(tmp_path):
    """Chunks of 7 tokens that carry the state give the losses of one chunk that covers each stream."""
    totals = {}
    for bptt in (7, 10_000):
        data = prepared(tmp_path, bptt=bptt, batch_size=3)
        model = model_for(data, num_layers=2)
        batches = list(data.train_dataloader())
        assert (len(batches) == 1) == (bptt == 10_000)
        total = sum(model.compute_loss(b) * (b["target"] != IGNORE).sum() for b in batches)
        totals[bptt] = total
        assert not any(s.requires_grad for s in model.carried)  # detached: gradients stop at a chunk's start
    torch.testing.assert_close(totals[7], totals[10_000])


def test_every_evaluation_token_once_on_any_number_of_processes(tmp_path):
    data = prepared(tmp_path, bptt=5, batch_size=4)
    seen = {}
    for processes in (1, 2, 3):
        pairs = []
        for rank in range(processes):
            data.trainer = SimpleNamespace(world_size=processes, global_rank=rank)
            for batch in data.val_dataloader():
                pairs += zip(batch["index"].tolist(), batch["target"].tolist(), strict=True)
        assert len({index for index, _ in pairs}) == len(pairs)  # no record twice
        seen[processes] = sorted(pairs)
    assert seen[1] == seen[2] == seen[3]
    # record k * 4 + s is chunk k of stream s: in stream order the targets are the whole text's, each once
    in_order = sorted(seen[1], key=lambda pair: (pair[0] % 4, pair[0] // 4))
    assert [t for _, row in in_order for t in row if t != IGNORE] == data.splits["val"].ids[1:].tolist()


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_bits_per_character_by_hand(tmp_path, tokenizer):
    """A model that gives every token the same probability 1/V: ln V nats per token, and bits per character the
    targets' log2 V over the characters they cover."""
    train, val = "to be or not to be \n", "not to be or to be \n"
    assert len(train) == len(val) == 20
    for batch_size in (1, 3):
        data = prepared(tmp_path, train + val, "validate", tokenizer=tokenizer, val_ratio=0.5, batch_size=batch_size,
                        bptt=4)
        model = model_for(data, tie_embeddings=False)
        torch.nn.init.zeros_(model.output.weight)
        torch.nn.init.zeros_(model.output.bias)
        model.on_validation_epoch_start()
        records = [r for batch in data.val_dataloader() for r in model.evaluate(batch, "val")]
        metrics = model.metrics(records, "val")
        V = data.tokenizer.get_vocab_size()
        # word: 6 tokens, 5 targets covering "to be or to be" after "not"; char: 19 targets after "n"
        targets, chars = (5, 18 - 3) if tokenizer == "word" else (19, 19)
        assert sum(r["tokens"] for r in records) == targets
        assert metrics["val_loss"] == pytest.approx(math.log(V))
        assert metrics["val_ppl"] == pytest.approx(V)
        assert metrics["val_bpc"] == pytest.approx(targets * math.log2(V) / chars)


def test_near_zero_temperature_is_greedy_and_a_seed_gives_one_text(tmp_path):
    data = prepared(tmp_path)
    model = model_for(data, num_layers=2, max_new_tokens=15)
    prompts = [data.tokenizer.encode("line 3: the").ids, data.tokenizer.encode("fox").ids]
    keys = [(0,), (1,)]
    # greedy by hand: the whole sequence again at every step, no carried state
    greedy = []
    for prompt in prompts:
        ids = list(prompt)
        for _ in range(15):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
        greedy.append(ids[len(prompt) :])
    model.temperature = 0
    assert model.generate(prompts, keys) == greedy
    model.temperature = 1e-6
    assert model.generate(prompts, keys) == greedy
    model.temperature, model.top_k, model.top_p = 1.0, 5, 0.9
    first = model.generate(prompts, keys)
    assert model.generate(prompts, keys) == first
    assert model.generate(prompts[1:], keys[1:]) == first[1:]  # a row's text does not depend on the other rows
    model.seed = 1
    assert model.generate(prompts, keys) != first


def test_top_k_and_top_p_keep_only_the_most_likely_tokens(tmp_path):
    model = model_for(prepared(tmp_path), top_k=2)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(200, 1)
    generators = [torch.Generator().manual_seed(i) for i in range(200)]
    assert set(model.sample(logits, generators).tolist()) == {0, 1}
    model.top_k, model.top_p = 0, 0.6
    assert set(model.sample(logits, generators).tolist()) == {0, 1}  # 0.5 alone does not reach 0.6
    model.top_p = 0.45
    assert set(model.sample(logits, generators).tolist()) == {0}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_dropout_fits_every_backend(tmp_path, cell):
    data = prepared(tmp_path)
    ids = data.splits["train"].ids[:40].view(2, 20)
    outputs = {}
    for backend in ("torch", "fused", "loop"):
        model = model_for(data, cell=cell, backend=backend, num_layers=1, weight_dropout=0.5)
        torch.manual_seed(1)  # the same mask on every backend
        logits, _ = model(ids)
        logits.sum().backward()
        outputs[backend] = logits
        raw = model.recurrent.parametrizations.weight_hh_l0.original
        assert raw.grad is not None and (raw.grad == 0).any() and raw.grad.abs().sum() > 0
        model.eval()
        assert not torch.allclose(model(ids)[0], logits)  # no dropout in evaluation
    torch.testing.assert_close(outputs["torch"], outputs["fused"])
    torch.testing.assert_close(outputs["torch"], outputs["loop"])


def test_tokenizers_cover_the_text_and_decode_it_back():
    text = "def f(x):\n    return x * 2  # doubled\n"
    for kind in ("char", "bpe"):
        tokenizer = train_tokenizer(text * 3, kind, 300)
        tokens = encode(tokenizer, text)
        assert tokenizer.decode(tokens.ids.tolist()) == text
        assert int(tokens.chars.sum()) == len(text)
    words = train_tokenizer(text, "word", 100)
    assert words.decode(encode(words, "return x").ids.tolist()) == "return x"


def test_the_standard_library_corpus_is_fixed_and_in_whole_files():
    shares = {"val": 0.1, "test": 0.1, "train": 0.8}
    texts = stdlib_texts(40_000, shares)
    assert texts == stdlib_texts(40_000, shares)
    for split, share in shares.items():
        assert 0 < len(texts[split].encode()) <= share * 40_000, split
    assert not set(texts["val"].splitlines()) >= set(texts["train"].splitlines())


def test_fit_then_predict_from_a_file_standard_input_and_the_prompt_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *FAST, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2"])
    (folder,) = (tmp_path / "outputs/language_model").rglob("checkpoints")
    assert "--- sample" in (folder / "val_samples.txt").read_text()
    (tmp_path / "prompts.txt").write_text("import os\n\ndef main():\n")
    predict = ["predict", *FAST, "--ckpt_path=last", "--model.samples_per_prompt=2", "--model.temperature=1"]
    rows = {}
    for source, extra in (("file", ["--data.predict_path=prompts.txt"]), ("again", ["--data.predict_path=prompts.txt"]),
                          ("stdin", ["--data.predict_path=-"]), ("option", ["--data.prompt=class "])):
        monkeypatch.setattr("sys.stdin", io.StringIO("import os\n"))
        capsys.readouterr()
        main([*predict, *extra, f"--prediction_writer.path={source}.jsonl"])
        assert f"written to {source}.jsonl" in capsys.readouterr().out
        rows[source] = [json.loads(line) for line in (tmp_path / f"{source}.jsonl").read_text().splitlines()]
    assert [(r["index"], r["sample"], r["prompt"]) for r in rows["file"]] == [
        (0, 0, "import os"), (0, 1, "import os"), (1, 0, "def main():"), (1, 1, "def main():")]
    assert rows["file"] == rows["again"] and rows["stdin"] == rows["file"][:2]  # the seed and the prompt decide
    assert rows["file"][0]["text"] != rows["file"][1]["text"] and len(rows["option"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(UserError, match=r"--data\.predict_path - \(standard input\): no prompt \(1 lines, all blank"):
        main([*predict, "--data.predict_path=-"])
    with pytest.raises(UserError, match=r"checkpoint .*last\.ckpt was trained with a char tokenizer, but "
                                        r"--data\.tokenizer is 'word'"):
        main(["test", *FAST, "--ckpt_path=last", "--data.tokenizer=word"])


@pytest.mark.parametrize(("options", "message"), [
    ({"bptt": 0}, r"--data\.bptt is 0; expected at least 1"),
    ({"bptt": -5}, r"--data\.bptt is -5; expected at least 1"),
    ({"batch_size": 0}, r"--data\.batch_size is 0; expected at least 1"),
    ({"tokenizer": "bytes"}, r"--data\.tokenizer is 'bytes'; expected char, bpe or word"),
    ({"val_ratio": 0.6, "test_ratio": 0.5}, r"--data\.val_ratio is 0\.6"),
    ({"val_ratio": 0.0}, r"--data\.val_ratio is 0\.0; expected in \(0, 1 - test_ratio\)"),
    ({"stdlib_chars": 0}, r"--data\.stdlib_chars is 0; expected at least 1"),
    ({"tokenizer": "word", "vocab_size": 0}, r"--data\.vocab_size is 0; expected at least 2 for --data\.tokenizer wo"),
    ({"tokenizer": "word", "vocab_size": 1}, r"--data\.vocab_size is 1; expected at least 2 for --data\.tokenizer wo"),
    ({"tokenizer": "bpe", "vocab_size": 100}, r"--data\.vocab_size is 100; expected at least 256 for --data\.tokenizer "
                                              r"bpe"),
    ({"vocab_size": 50}, r"--data\.vocab_size is 50; expected to be left out with --data\.tokenizer char"),
    ({"hf_config": "wikitext-2-raw-v1"}, r"--data\.hf_config is 'wikitext-2-raw-v1'; expected only with "
                                         r"--data\.hf_dataset"),
    ({"text_column": "content"}, r"--data\.text_column is 'content'; expected only with --data\.hf_dataset"),
    ({"predict_path": "-", "prompt": "def f("}, r"--data\.prompt is 'def f\('; expected to be left out when "
                                              r"--data\.predict_path is given"),
    ({"path": "a.txt", "hf_dataset": "wikitext"}, r"--data\.hf_dataset is 'wikitext'; expected to be left out when "
                                                  r"--data\.path is given"),
    ({"sha256": "0" * 64}, r"--data\.sha256 is '0+'; expected only with a --data\.path file or URL"),
    ({"sha256": "0" * 64, "path": "."}, r"--data\.sha256 is '0+'; expected only with a --data\.path file or URL"),
])
def test_bad_data_options_are_named(options, message):
    with pytest.raises(UserError, match=message):
        LanguageModelData(**options)


@pytest.mark.parametrize(("options", "message"), [
    ({"cell": "transformer"}, "model.cell is 'transformer'; expected one of"),
    ({"weight_dropout": 1.0}, r"model.weight_dropout is 1.0; expected in \[0, 1\)"),
    ({"top_p": 0.0}, r"model.top_p is 0.0; expected in \(0, 1\]"),
    ({"temperature": -1.0}, "model.temperature is -1.0"),
])
def test_bad_model_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        LanguageModel(**options)


def test_bad_text_is_named(tmp_path):
    with pytest.raises(UserError, match=r"text\.txt \(cut by --data\.val_ratio=0\.2 and --data\.test_ratio=0\.0\): "
                                        r"the train text has 0 characters, too few"):
        prepared(tmp_path, "")
    (tmp_path / "latin1.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.txt:2: not valid UTF-8"):
        LanguageModelData(path=str(tmp_path / "latin1.txt")).setup("fit")
    data = prepared(tmp_path, "a" * 20, batch_size=8)
    data.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(UserError, match=r"the train text has 16 tokens, too few for --data\.batch_size=8 streams on "
                                        r"each of 2 process\(es\), 2 tokens a stream at least"):
        data.train_dataloader()
    data = prepared(tmp_path, tokenizer="word", prompt="   ")
    with pytest.raises(UserError, match=r"--data\.prompt: prompt 1 has no tokens"):
        data.prompts()


def test_texts_too_short_say_which_split_and_options(tmp_path):
    with pytest.raises(UserError, match=r"text\.txt \(cut by --data\.val_ratio=0\.2 and --data\.test_ratio=0\.0\): the "
                                        r"train text has 16 tokens, too few for --data\.batch_size=30 streams on each "
                                        r"of 1 process"):
        prepared(tmp_path, "a" * 20, batch_size=30)  # at setup, before any training
    blank_end = "hello world again\n" * 20 + " " * 200  # the validation text is white space: no word in it
    with pytest.raises(UserError, match=r"the val text has 0 tokens, too few for one stream on each of 1 process"):
        prepared(tmp_path, blank_end, tokenizer="word", val_ratio=0.3)
    data = prepared(tmp_path, "hello world again\n" * 20 + " " * 60 + "last word", tokenizer="word", val_ratio=0.15)
    for rank in range(3):  # every process stops, not only those left without a stream
        data.trainer = SimpleNamespace(world_size=3, global_rank=rank)
        with pytest.raises(UserError, match=r"the val text has 2 tokens, too few for one stream on each of 3 process"):
            data.val_dataloader()
    data = prepared(tmp_path, batch_size=2)
    data.trainer = SimpleNamespace(world_size=3, global_rank=0)
    with pytest.raises(UserError, match=r"--data\.batch_size is 2, fewer than the 3 processes: evaluation reads"):
        data.val_dataloader()
    with pytest.raises(UserError, match=r"--data\.path .*missing\.txt does not exist; expected a text file"):
        LanguageModelData(path=str(tmp_path / "missing.txt")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"--data\.path .*empty \(cut by .*\): the train text has 0 characters"):
        LanguageModelData(path=str(tmp_path / "empty")).setup("fit")
    with pytest.raises(UserError, match=r"the standard library at .* \(--data\.stdlib_chars=10, cut by "
                                        r"--data\.val_ratio=0\.05 .*\): the \w+ text has 0 characters"):
        LanguageModelData(stdlib_chars=10).setup("fit")


def test_nothing_to_continue_is_named(tmp_path, monkeypatch):
    data = LanguageModelData()
    with pytest.raises(UserError, match=r"predict needs a trained model: pass --ckpt_path"):
        data.setup("predict")
    data.tokenizer = train_tokenizer(TEXT, "char", 0)
    for text, lines in (("", 0), ("\n \n\t\n", 3)):
        monkeypatch.setattr("sys.stdin", io.StringIO(text))
        data.hparams.predict_path = "-"
        with pytest.raises(UserError, match=rf"--data\.predict_path - \(standard input\): no prompt \({lines} lines, "
                                            r"all blank\)"):
            data.prompts()
    (tmp_path / "blank.txt").write_text("\n\n")
    for path, message in ((tmp_path / "blank.txt", r"no prompt \(2 lines, all blank\)"),
                          (tmp_path / "missing.txt", "does not exist"), (tmp_path, "is a folder")):
        data.hparams.predict_path = str(path)
        with pytest.raises(UserError, match=rf"--data\.predict_path {re.escape(str(path))}: {message}"):
            data.prompts()


def test_a_checkpoint_with_data_it_was_not_trained_for_is_named(tmp_path):
    """The checkpoint holds the tokenizer; data options that describe another one are an error naming both."""
    def checkpoint(name: str, tokenizer: str) -> str:
        torch.save({"artefacts": {"tokenizer": tokenizer}}, tmp_path / name)
        return str(tmp_path / name)

    char = checkpoint("char.ckpt", train_tokenizer(TEXT, "char", 0).to_str())
    words = checkpoint("word.ckpt", train_tokenizer(TEXT, "word", 40).to_str())
    broken = checkpoint("broken.ckpt", '{"version": "1.0", "model": ')
    for path, options, message in (
        (char, {"tokenizer": "word"}, r"char\.ckpt was trained with a char tokenizer, but --data\.tokenizer is 'word'"),
        (char, {"tokenizer": "bpe"}, r"char\.ckpt was trained with a char tokenizer, but --data\.tokenizer is 'bpe'"),
        (words, {}, r"word\.ckpt was trained with a word tokenizer, but --data\.tokenizer is 'char'"),
        (words, {"tokenizer": "word", "vocab_size": 10}, r"word\.ckpt has a vocabulary of 40 tokens, more than "
                                                         r"--data\.vocab_size 10"),
        (broken, {}, r"broken\.ckpt: its tokenizer is not a tokenizers JSON"),
    ):
        data = LanguageModelData(**options)
        data.checkpoint_path = path
        with pytest.raises(UserError, match=rf"checkpoint .*{message}"):
            data.setup("predict")
    for path, options in ((char, {}), (words, {"tokenizer": "word"}), (words, {"tokenizer": "word", "vocab_size": 40})):
        data = LanguageModelData(prompt="the fox", **options)
        data.checkpoint_path = path
        data.setup("predict")
        assert data.splits["predict"][0]["prompt"] == "the fox"
