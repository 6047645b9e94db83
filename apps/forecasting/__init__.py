"""Time-series forecasting: history windows -> rnn_core Recurrent -> multi-horizon forecast.

``python -m apps.forecasting {fit,validate,test,predict}``; see configs/forecasting/.
"""

from apps.common.callbacks import GradientThroughTime
from apps.common.cli import run
from apps.forecasting.callbacks import ForecastFigure
from apps.forecasting.data import ForecastingData
from apps.forecasting.model import Forecaster

LINKS = [
    ("data.input_length", "model.input_length", "parse"),
    ("data.horizon", "model.horizon", "parse"),
    ("data.num_inputs", "model.num_inputs", "instantiate"),
    ("data.num_targets", "model.num_targets", "instantiate"),
    ("data.num_covariates", "model.num_covariates", "instantiate"),
]


def main(args: list[str] | None = None):
    """The forecasting command line (``args``, or sys.argv when None)."""
    return run(Forecaster, ForecastingData, "forecasting",
               callbacks={"forecast_figure": ForecastFigure, "gradient_through_time": GradientThroughTime},
               links=LINKS, args=args)
