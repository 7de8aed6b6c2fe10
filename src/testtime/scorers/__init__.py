"""Reward models behind one protocol: `score(requests) -> per-step scores`, and their reductions."""

from __future__ import annotations

import torch

from .._errors import UnknownNameError
from ._protocol import (
    REDUCTIONS,
    STEP_SEPARATOR,
    LogprobScorer,
    Reduction,
    Scorer,
    ScoreRequest,
    ScorerUsage,
    reduce_scores,
    split_steps,
)
from .confidence import CONFIDENCE_METRICS, ConfidenceScorer, ConfidenceTrace, confidence_metric
from .math_shepherd import MathShepherdScorer
from .oracle import OracleScorer
from .orm import ORMScorer
from .prm_head import PRMHead, PRMHeadScorer, find_head
from .qwen_prm import QwenPRMScorer
from .remote import RemoteScorer
from .rlhflow import RLHFlowScorer
from .scripted import ScriptedScorer
from .self_eval import SelfEvalScorer
from .skywork_prm import SkyworkPRMScorer

__all__ = [
    "CONFIDENCE_METRICS",
    "DEFAULT_SCORER",
    "MODEL_SCORERS",
    "REDUCTIONS",
    "SCORERS",
    "STEP_SEPARATOR",
    "ConfidenceScorer",
    "ConfidenceTrace",
    "LogprobScorer",
    "MathShepherdScorer",
    "ORMScorer",
    "OracleScorer",
    "PRMHead",
    "PRMHeadScorer",
    "QwenPRMScorer",
    "RLHFlowScorer",
    "SkyworkPRMScorer",
    "Reduction",
    "RemoteScorer",
    "ScoreRequest",
    "Scorer",
    "ScorerUsage",
    "ScriptedScorer",
    "SelfEvalScorer",
    "confidence_metric",
    "find_head",
    "load_scorer",
    "reduce_scores",
    "split_steps",
]

SCORERS = {
    "oracle": OracleScorer,
    "self-eval": SelfEvalScorer,
    "remote": RemoteScorer,
    "prm-head": PRMHeadScorer,
    "rlhflow": RLHFlowScorer,
    "math-shepherd": MathShepherdScorer,
    "qwen-prm": QwenPRMScorer,
    "skywork-prm": SkyworkPRMScorer,
    "orm": ORMScorer,
    "confidence": ConfidenceScorer,
}
"""Scorer name -> class. "default" resolves to the best scorer that works offline for the engine;
"confidence:METRIC" picks a metric of the confidence family (`CONFIDENCE_METRICS`)."""

MODEL_SCORERS = ("rlhflow", "math-shepherd", "qwen-prm", "skywork-prm", "orm")
"""Families that load their own reward model (`model=`, from --scorer-model)."""

DEFAULT_SCORER = "prm-head"
"""What "default" means: the PRM head shipped for the engine's model (the embedded SmolLM2-135M-Instruct);
for a generator without a head, "self-eval"."""


def load_scorer(name: str, *, engine=None, **kwargs) -> Scorer:
    """Build a scorer by name; scorers that read the generator's model get `engine`.

    `name` may also be the path of a trained head (`HEAD.safetensors` from `testtime train-prm`).
    """
    if name.endswith(".safetensors"):
        return PRMHeadScorer(engine, head=name, **kwargs)
    if name == "confidence" or name.startswith("confidence:"):
        metric = name.partition(":")[2] or "mean"
        allowed = ("window", "tail", "top_logprobs")
        return ConfidenceScorer(metric, **{k: v for k, v in kwargs.items() if k in allowed})
    key = name
    if name == "default":
        # Only an in-process engine exposes a torch model (remote engines keep the model's *name* in `.model`).
        has_model = isinstance(getattr(engine, "model", None), torch.nn.Module)
        key = DEFAULT_SCORER if has_model and find_head(engine.model) is not None else "self-eval"
    if key not in SCORERS:
        raise UnknownNameError("scorer", name, [*SCORERS, "default"], hint=f"or pass a trained head's .safetensors path; confidence takes a metric, confidence:{{{','.join(CONFIDENCE_METRICS)}}}")
    if key in ("self-eval", "prm-head"):
        return SCORERS[key](engine, **kwargs)
    return SCORERS[key](**kwargs)
