"""The lecture's vanishing-gradient picture for RNN, LSTM and GRU side by side, on the embedded series.

    python -m apps.forecasting.gradients [--input-length 96] [--steps 300] [--output gradient_through_time_cells.png]

For each cell, a forecaster (seeded, one time step per recurrent step) is trained for a few hundred steps, then the
norm of d loss / d x_t is measured for every input step t with the GradientThroughTime callback's probe; the figure
shows the three curves on one log axis, each relative to the gradient at the last step.
"""

from __future__ import annotations

import argparse

import torch
from matplotlib.figure import Figure

from apps.common.callbacks import GradientThroughTime
from apps.forecasting.data import ForecastingData
from apps.forecasting.model import Forecaster

CELLS = ("rnn", "lstm", "gru")


def measure_cells(input_length: int, steps: int, horizon: int = 24, hidden_size: int = 64, seed: int = 0) -> dict:
    """Gradient norm per input step (numpy (input_length,)) for each cell after ``steps`` Adam steps."""
    data = ForecastingData(input_length=input_length, horizon=horizon)
    data.setup("fit")
    curves = {}
    for cell in CELLS:
        torch.manual_seed(seed)
        model = Forecaster(num_inputs=data.num_inputs, num_targets=data.num_targets, input_length=input_length,
                           horizon=horizon, cell=cell, hidden_size=hidden_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        batches = iter(())
        for _ in range(steps):
            batch = next(batches, None)
            if batch is None:
                batches = iter(data.train_dataloader())
                batch = next(batches)
            optimizer.zero_grad()
            model.compute_loss(batch).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        curves[cell], _ = GradientThroughTime(num_samples=64).measure(model, data.splits["val"])
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-length", type=int, default=96, help="input steps the recurrence reads")
    parser.add_argument("--steps", type=int, default=300, help="training steps per cell before measuring")
    parser.add_argument("--output", default="gradient_through_time_cells.png", help="PNG file to write")
    args = parser.parse_args()
    curves = measure_cells(args.input_length, args.steps)
    figure = Figure(figsize=(7, 4))
    ax = figure.subplots()
    for cell, norms in curves.items():
        ax.semilogy(range(1, len(norms) + 1), norms / norms[-1], label=cell.upper())
        print(f"{cell:>5}: gradient at the first step / at the last step = {norms[0] / norms[-1]:.3g}")
    ax.set(xlabel="input step t (the forecast follows step T)", ylabel="||d loss / d x_t|| (last step = 1)",
           title=f"How much of the loss gradient reaches each input step ({args.steps} training steps)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    figure.savefig(args.output, dpi=110, bbox_inches="tight")
    print(f"Figure written to {args.output}")


if __name__ == "__main__":
    main()
