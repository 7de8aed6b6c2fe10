"""One scheduler for every strategy: per-problem programs merged into shared decode steps and scorer calls."""

from ._program import Cancelled, Program
from ._scheduler import DEFAULT_STEP_CHUNK, Handle, Scheduler, SchedulerStats
from ._views import ProgramBatch, ProgramEngine, ProgramScorer

__all__ = ["Cancelled", "DEFAULT_STEP_CHUNK", "Handle", "Program", "ProgramBatch", "ProgramEngine", "ProgramScorer", "Scheduler", "SchedulerStats"]
