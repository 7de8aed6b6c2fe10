"""testtime: inference-time compute scaling for language models."""

from ._errors import (
    DataError,
    EngineError,
    MissingDependencyError,
    ScorerError,
    TesttimeError,
    UnknownNameError,
    ValidationError,
)
from .engines import Completion, Request, RequestOutput, SamplingParams, TransformersEngine

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "DataError",
    "EngineError",
    "MissingDependencyError",
    "Request",
    "RequestOutput",
    "SamplingParams",
    "ScorerError",
    "TesttimeError",
    "TransformersEngine",
    "UnknownNameError",
    "ValidationError",
    "__version__",
]
