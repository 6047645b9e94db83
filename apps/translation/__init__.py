"""Seq2seq translation with attention: source sentence -> SequenceEncoder -> RecurrentDecoder -> target sentence.

``python -m apps.translation {fit,validate,test,predict}``; see configs/translation/.
"""

from apps.common.callbacks import GradientThroughTime
from apps.common.cli import run
from apps.translation.data import TranslationDataModule
from apps.translation.model import TranslationModel


def main(args: list[str] | None = None):
    """The translation command line (``args``, or sys.argv when None)."""
    return run(TranslationModel, TranslationDataModule, "translation",
               callbacks={"gradient_through_time": GradientThroughTime}, args=args)
