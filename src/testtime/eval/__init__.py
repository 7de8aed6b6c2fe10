"""Evaluation: resumable runs of strategies x budgets on a task, metrics with intervals, and plots."""

from ._metrics import SummaryRow, format_table, summarize, wilson_interval
from ._plot import plot_accuracy
from ._results import ResultsFile
from .bon_curve import BonCurve, bon_curve
from .difficulty import Difficulty, compute_difficulty
from .export import EXPORT_FORMATS, ExportRules, export_records, write_jsonl_atomic
from .optimize import learn_policy
from .report import build_report
from .runner import EvalConfig, EvalReport, run_eval

__all__ = ["BonCurve", "EXPORT_FORMATS", "ExportRules", "bon_curve", "export_records", "write_jsonl_atomic", "Difficulty", "build_report", "compute_difficulty", "learn_policy", "EvalConfig", "EvalReport", "ResultsFile", "SummaryRow", "format_table", "plot_accuracy", "run_eval", "summarize", "wilson_interval"]
