"""rnn_core: recurrent cells, Recurrent over time, attention, decoding and encoders in pure PyTorch."""

from rnn_core.cells import (
    CELLS,
    CoupledLSTMCell,
    ElmanCell,
    GRUCell,
    LSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
)
from rnn_core.conv import ConvRecurrent
from rnn_core.recurrent import BACKENDS, Recurrent

__all__ = [
    "BACKENDS",
    "CELLS",
    "ConvRecurrent",
    "CoupledLSTMCell",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "Recurrent",
    "RecurrentCell",
]
