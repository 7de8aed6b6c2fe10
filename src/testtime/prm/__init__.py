"""Train and evaluate process reward models: Monte-Carlo step labels, a head on the generator's frozen hidden
states, and a quality report (AUC from partial solutions; best-of-N vs majority).

It sits beside `eval` in the layer order: it samples with engines, grades against tasks' gold answers and
selects with the strategies' rules.
"""

from ._label import LabelParams, is_correct, label_problems, prefix_key
from ._metrics import FRACTIONS, auc, prefix_index
from ._report import PRMReport, ReportConfig, format_report, plot_report, prm_report, summarize_rows
from ._train import FEATURE_LAYERS, StepData, TrainParams, build_step_data, fit_head, train_head

__all__ = [
    "FEATURE_LAYERS",
    "FRACTIONS",
    "LabelParams",
    "PRMReport",
    "ReportConfig",
    "StepData",
    "TrainParams",
    "auc",
    "build_step_data",
    "fit_head",
    "format_report",
    "is_correct",
    "label_problems",
    "plot_report",
    "prefix_index",
    "prefix_key",
    "prm_report",
    "summarize_rows",
    "train_head",
]
