"""Reward models behind one protocol: `score(requests) -> per-step scores`, and their reductions."""

from __future__ import annotations

import inspect

from .._errors import UnknownNameError, ValidationError
from ..engines import ModelEngine
from ._protocol import (
    REDUCTIONS,
    STEP_SEPARATOR,
    HiddenStateScorer,
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
    "DEFAULT_REMOTE_SCORER",
    "DEFAULT_SCORER",
    "MODEL_SCORERS",
    "REDUCTIONS",
    "SCORERS",
    "STEP_SEPARATOR",
    "ConfidenceScorer",
    "ConfidenceTrace",
    "HiddenStateScorer",
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
    "default_scorer",
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
"""Scorer name -> class. "default" resolves to the best scorer that works for the engine (`default_scorer`);
"confidence:METRIC" picks a metric of the confidence family (`CONFIDENCE_METRICS`). A class with
`needs_engine = True` is built on the generator's own model and takes the engine as its first argument."""

MODEL_SCORERS = ("rlhflow", "math-shepherd", "qwen-prm", "skywork-prm", "orm")
"""Families that load their own reward model (`model=`, from --scorer-model), with `batch_size` and `device`."""

DEFAULT_SCORER = "prm-head"
"""What "default" means in process: the PRM head shipped for the engine's model (the embedded
SmolLM2-135M-Instruct); for a generator without a head, "self-eval"."""

DEFAULT_REMOTE_SCORER = "confidence:mean"
"""What "default" means on an engine without model access (vLLM, OpenAI-compatible servers): DeepConf's mean token
confidence, from the top-k logprobs every OpenAI-compatible server returns with the completion (no extra model,
no extra request). The in-process defaults read hidden states and next-token distributions a server keeps."""


def default_scorer(engine) -> str:
    """The scorer "default" names for `engine`: the shipped PRM head or self-eval where the engine lends its model
    (`ModelEngine`, the in-process engine), else `DEFAULT_REMOTE_SCORER`."""
    if not isinstance(engine, ModelEngine):
        return DEFAULT_REMOTE_SCORER
    return DEFAULT_SCORER if find_head(engine.model) is not None else "self-eval"


def load_scorer(name: str, *, engine=None, **options) -> Scorer:
    """Build a scorer by name. Every family is built here: the CLI, `run_eval`, `bench spr` and `serve` all come
    through this function.

    Args:
        name: A family of `SCORERS`; "default" (`default_scorer(engine)`); "confidence:METRIC"; or the path of a
            trained head (`HEAD.safetensors` from `testtime train-prm`).
        engine: The generator. Families that read its model (`needs_engine`: prm-head, self-eval, a head file)
            get it; "default" is resolved for it.
        options: Keyword arguments of the family's class: `model` (the reward model of the `MODEL_SCORERS`, a
            directory or hub id; for remote, the served model's name), `batch_size`, `device`, `base_url`,
            `window`, ... An option the family does not take is a `ValidationError` that lists those it does.
    """
    key = default_scorer(engine) if name == "default" else name
    if key.endswith(".safetensors"):
        return _build("prm-head", PRMHeadScorer, engine, {"head": key, **options})
    family, _, metric = key.partition(":")
    if family == "confidence":
        return _build(family, ConfidenceScorer, engine, options, metric or "mean")
    if metric or family not in SCORERS:
        raise UnknownNameError("scorer", name, [*SCORERS, "default"], hint=f"or pass a trained head's .safetensors path; confidence takes a metric, confidence:{{{','.join(CONFIDENCE_METRICS)}}}")
    if family == "remote" and not options.get("model"):
        raise ValidationError("--scorer remote needs --scorer-model, the served reward model's name.", parameter="scorer_model")
    return _build(family, SCORERS[family], engine, options)


def _build(family: str, cls: type, engine, options: dict, *args) -> Scorer:
    takes = [k for k in inspect.signature(cls).parameters if k not in ("self", "engine", "metric")]
    unknown = [k for k in options if k not in takes]
    if unknown:
        allowed = f"its options are: {', '.join(takes)}" if takes else "it takes none"
        raise ValidationError(f"the {family} scorer takes no option {unknown[0]!r}; {allowed}.", parameter=unknown[0], value=options[unknown[0]])
    # Families built on the generator's own model declare it on the class; the others do not mention it.
    if getattr(cls, "needs_engine", False):
        return cls(engine, *args, **options)
    return cls(*args, **options)
