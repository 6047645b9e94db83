"""The cells benchmark's contract: a row per cell and backend, ratios to torch.nn.LSTM, and --json."""

import json

from benchmarks import cells


def test_json_has_every_cell_and_backend(capsys):
    cells.main(["--steps", "3", "--batch", "2", "--size", "8", "--repeats", "1", "--warmup", "0", "--json"])
    report = json.loads(capsys.readouterr().out)
    rows = {(r["cell"], r["backend"]): r for r in report["rows"]}
    assert rows["torch.nn.LSTM", "-"]["forward_backward_ratio_to_nn_lstm"] == 1.0
    for cell in ("rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm"):
        for backend in ("fused", "loop"):
            row = rows[cell, backend]
            assert row["forward_ms"] > 0 and row["forward_backward_ms"] > 0
            assert row["forward_backward_ratio_to_nn_lstm"] > 0
    assert ("peephole_lstm", "torch") not in rows and ("lstm", "torch") in rows


def test_table(capsys):
    cells.main(["--steps", "3", "--batch", "2", "--size", "8", "--repeats", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert "x LSTM" in out and "coupled_lstm" in out
