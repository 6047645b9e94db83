"""Reversible instance normalisation for forecasting windows."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022): each window is standardised by its own mean and standard
    deviation per channel (with a learned affine map), and the forecast is mapped back."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        mean = x.mean(1, keepdim=True).detach()
        std = (x.var(1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
        return (x - mean) / std * self.weight + self.bias, (mean, std)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """``y (B, H, C, Q)`` for the first C channels."""
        mean, std = (s[:, :, : y.shape[2], None] for s in stats)
        C = y.shape[2]
        y = (y - self.bias[:C, None]) / (self.weight[:C, None] + self.eps * self.eps)
        return y * std + mean
