"""Language model: token ids -> embedding -> rnn_core Recurrent -> next token, trained by truncated BPTT.

``python -m apps.language_model {fit,validate,test,predict}``; see configs/language_model/.
"""

from apps.common.cli import run
from apps.language_model.data import LanguageModelData
from apps.language_model.model import LanguageModel


def main(args: list[str] | None = None):
    """The language model's command line (``args``, or sys.argv when None)."""
    return run(LanguageModel, LanguageModelData, "language_model", args=args)
