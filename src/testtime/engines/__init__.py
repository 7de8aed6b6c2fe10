"""Text generation behind one protocol: `Engine.generate` for whole completions, `Engine.start` for a live batch."""

from ._confidence import DEFAULT_CONFIDENCE_WINDOW, ConfidenceStop, token_confidence
from ._embedded import EMBEDDED_MODEL_NAMES, cache_dir, embedded_model_dir
from ._protocol import (
    BatchSizedEngine,
    ConcurrentEngine,
    Engine,
    EngineView,
    HiddenStateBatch,
    KVCacheEngine,
    LiveBatch,
    ModelEngine,
    PromptEncoder,
    StepOutput,
    StepReason,
    SteppableBatch,
)
from ._types import (
    DEFAULT_MAX_TOKENS,
    MAX_LOGPROBS,
    Completion,
    EngineUsage,
    FinishReason,
    Request,
    RequestOutput,
    SamplingParams,
    TokenLogprobs,
)
from .openai_engine import OpenAIEngine
from .scripted import ScriptedEngine
from .text_batch import TextLiveBatch
from .transformers_engine import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MODEL, TransformersEngine
from .vllm_engine import VLLMEngine

__all__ = [
    "DEFAULT_CONFIDENCE_WINDOW",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "EMBEDDED_MODEL_NAMES",
    "BatchSizedEngine",
    "Completion",
    "ConcurrentEngine",
    "Engine",
    "EngineUsage",
    "EngineView",
    "FinishReason",
    "HiddenStateBatch",
    "KVCacheEngine",
    "LiveBatch",
    "ModelEngine",
    "OpenAIEngine",
    "PromptEncoder",
    "Request",
    "RequestOutput",
    "SamplingParams",
    "ScriptedEngine",
    "StepOutput",
    "StepReason",
    "SteppableBatch",
    "TextLiveBatch",
    "TokenLogprobs",
    "TransformersEngine",
    "VLLMEngine",
    "cache_dir",
    "embedded_model_dir",
    "token_confidence",
]
