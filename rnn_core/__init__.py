"""rnn_core: recurrent cells, Recurrent over time, attention, decoders, search and encoders in pure PyTorch."""

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
from rnn_core.decoders import Decoder, RecurrentDecoder, ShowAttendTellDecoder, attention_penalty
from rnn_core.encoders import Bridge
from rnn_core.recurrent import BACKENDS, Recurrent
from rnn_core.search import Hypothesis, beam_search, greedy_search, length_penalty

__all__ = [
    "BACKENDS",
    "CELLS",
    "Bridge",
    "ConvRecurrent",
    "CoupledLSTMCell",
    "Decoder",
    "ElmanCell",
    "GRUCell",
    "Hypothesis",
    "LSTMCell",
    "PeepholeLSTMCell",
    "Recurrent",
    "RecurrentCell",
    "RecurrentDecoder",
    "ShowAttendTellDecoder",
    "attention_penalty",
    "beam_search",
    "greedy_search",
    "length_penalty",
]
