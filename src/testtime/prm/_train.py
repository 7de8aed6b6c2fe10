"""Train a PRM head on the generator's frozen hidden states from Monte-Carlo step labels.

Features: the hidden state at each step's last token (`scorers.prm_head.step_features`), for a few candidate
layers, cached per problem. Targets: the soft MC values (binary cross-entropy on a probability target, as
Math-Shepherd's soft estimation). Candidates: logistic regression and a one-hidden-layer MLP, each on a few
layer choices; the one with the best validation AUC of *final correctness from the prefix* (averaged over
25/50/75/100% of the steps, the report's read-out) wins and is refit on all problems.

The validation split is by problem (every sample of a problem is on one side), so the score measures
generalization to new questions, not to new samples of a seen one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._errors import DataError, check
from ..scorers import STEP_SEPARATOR, split_steps
from ..scorers.prm_head import PRMHead, model_fingerprint, step_features
from ..tasks import Problem
from ._metrics import FRACTIONS, auc, prefix_index

__all__ = ["TrainParams", "StepData", "build_step_data", "fit_head", "train_head", "FEATURE_LAYERS"]

FEATURE_LAYERS = (-1, 8, 12, 16, 20, 24)
"""Layers whose hidden states are cached (transformers indexing: -1 = final-norm output; SmolLM2-135M has 30)."""


@dataclass
class TrainParams:
    """Which heads are tried and how they are fit."""

    layer_sets: list[list[int]] = field(default_factory=lambda: [[-1], [16], [20], [24], [16, -1]])
    """Layer choices tried (each a list of layers concatenated); layers deeper than the model are skipped."""
    kinds: list[str] = field(default_factory=lambda: ["logistic", "mlp"])
    """Head kinds tried: "logistic" and/or "mlp" (one hidden layer of `hidden_size` ReLU units)."""
    hidden_size: int = 64
    """MLP width."""
    weight_decay: float = 1e-2
    """L2 penalty on the weights (features are standardized, so one value fits all layers)."""
    epochs: int = 300
    """Full-batch Adam steps."""
    val_fraction: float = 0.2
    """Share of problems held out for validation (0 < f < 1)."""
    seed: int = 0

    def __post_init__(self) -> None:
        check(0 < self.val_fraction < 1, f"`val_fraction` must be in (0, 1), got {self.val_fraction}.", parameter="val_fraction", value=self.val_fraction)
        for k in self.kinds:
            check(k in ("logistic", "mlp"), f"head kinds are 'logistic' and 'mlp', got {k!r}.", parameter="kinds", value=k)


@dataclass
class StepData:
    """One row per labelled step: features (N, F) for each cached layer, and what we know about the step."""

    features: dict[int, torch.Tensor]
    """Layer -> (N, C) hidden states."""
    value: torch.Tensor
    """(N,) MC value of the step prefix (the final step: the solution's correctness)."""
    final: torch.Tensor
    """(N,) whether the solution this step belongs to is correct."""
    problem: list[int]
    """Problem index of each row."""
    sample: list[int]
    """Global sample index of each row."""
    step: list[int]
    """0-based step index within its solution."""
    num_steps: list[int]
    """Steps in the row's solution."""
    num_outcome_labels: int = 0
    """Non-final steps labelled with their solution's outcome because their prefix had no rollouts."""


def _layer_key(layer: int, num_layers: int) -> int:
    return layer if layer >= 0 else num_layers + 1 + layer


def build_step_data(
    engine,
    problems: Sequence[Problem],
    rows: Sequence[dict],
    cache: str | Path,
    *,
    layers: Sequence[int] = FEATURE_LAYERS,
    batch_size: int = 8,
    use_tqdm: bool = True,
) -> StepData:
    """Hidden-state features of every labelled step, computed once per problem and cached in `cache` (.pt)."""
    num_layers = engine.model.config.num_hidden_layers
    layers = sorted({_layer_key(layer, num_layers) for layer in layers if -num_layers - 1 <= layer <= num_layers})
    cache = Path(cache)
    stored: dict[str, torch.Tensor] = {}
    if cache.exists():
        blob = torch.load(cache, weights_only=True)
        if blob.get("layers") == layers:
            stored = blob["features"]
    todo = [(p, r) for p, r in zip(problems, rows) if p.id not in stored]
    bar = None
    if use_tqdm and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="features", unit="problem", dynamic_ncols=True)
    for n, (p, r) in enumerate(todo):
        texts = [s["text"] for s in r["samples"]]
        feats = step_features(engine, p.chat(), texts, layers=layers, batch_size=batch_size)
        stored[p.id] = torch.cat(feats).to(torch.float16)  # (sum S, L*C); fp16 halves the cache
        if bar is not None:
            bar.update(1)
        if (n + 1) % 25 == 0 or n == len(todo) - 1:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"layers": layers, "features": stored}, cache)
    if bar is not None:
        bar.close()

    C = engine.model.config.hidden_size
    feats_all, value, final, prob, samp, step, nsteps = [], [], [], [], [], [], []
    sample_id = num_missing = 0
    for pi, (p, r) in enumerate(zip(problems, rows)):
        feats_all.append(stored[p.id].float())
        for s in r["samples"]:
            steps = split_steps(s["text"])
            for k in range(len(steps)):
                key = STEP_SEPARATOR.join(steps[: k + 1]) + STEP_SEPARATOR
                if k < len(steps) - 1 and key in r["prefix_values"]:
                    value.append(r["prefix_values"][key])
                else:
                    # The last step's label is the solution's own correctness. A prefix without rollouts (a
                    # separator token that also carried text, e.g. "\n\n\n") falls back to the same outcome label.
                    num_missing += k < len(steps) - 1
                    value.append(float(s["correct"]))
                final.append(float(s["correct"]))
                prob.append(pi)
                samp.append(sample_id)
                step.append(k)
                nsteps.append(len(steps))
            sample_id += 1
    X = torch.cat(feats_all) if feats_all else torch.zeros(0, C * len(layers))
    if X.shape[0] != len(value):
        raise DataError(f"cached features in {cache} do not match the labels ({X.shape[0]} vs {len(value)} steps); delete the cache.")
    by_layer = {}
    for j, layer in enumerate(layers):
        by_layer[layer] = X[:, j * C : (j + 1) * C]
        by_layer[layer - num_layers - 1] = by_layer[layer]  # also reachable by its negative index
    return StepData(by_layer, torch.tensor(value), torch.tensor(final), prob, samp, step, nsteps, num_missing)


def fit_head(X: torch.Tensor, y: torch.Tensor, *, kind: str = "logistic", hidden_size: int = 64, weight_decay: float = 1e-2, epochs: int = 300, seed: int = 0) -> PRMHead:
    """Fit a head to soft targets y in [0, 1] by full-batch Adam on binary cross-entropy."""
    g = torch.Generator().manual_seed(seed)
    mean, std = X.mean(0), X.std(0).clamp_min(1e-4)
    Z = (X - mean) / std
    F = X.shape[1]
    H = hidden_size if kind == "mlp" else 1
    w1 = (torch.randn(H, F, generator=g) / F**0.5).requires_grad_()
    b1 = torch.zeros(H, requires_grad=True)
    params = [w1, b1]
    if kind == "mlp":
        w2 = (torch.randn(1, H, generator=g) / H**0.5).requires_grad_()
        b2 = torch.zeros(1, requires_grad=True)
        params += [w2, b2]
    opt = torch.optim.Adam(params, lr=1e-2)
    with torch.enable_grad():
        for _ in range(epochs):
            z = Z @ w1.T + b1
            if kind == "mlp":
                z = torch.relu(z) @ w2.T + b2
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y)
            loss = loss + weight_decay * sum((w**2).sum() for w in params[::2]) / len(y) * 100
            opt.zero_grad()
            loss.backward()
            opt.step()
    head = PRMHead(mean=mean, std=std, w1=w1.detach(), b1=b1.detach())
    if kind == "mlp":
        head.w2, head.b2 = w2.detach(), b2.detach()
    return head


def prefix_aucs(scores: torch.Tensor, data: StepData, rows: Sequence[int]) -> dict[float, float | None]:
    """AUC of final correctness from the score at 25/50/75/100% of each solution's steps (rows: the steps used)."""
    by_sample: dict[int, dict[int, int]] = {}
    for i in rows:
        by_sample.setdefault(data.sample[i], {})[data.step[i]] = i
    out = {}
    for f in FRACTIONS:
        s, y = [], []
        for steps in by_sample.values():
            i0 = next(iter(steps.values()))
            i = steps[prefix_index(data.num_steps[i0], f)]
            s.append(float(scores[i]))
            y.append(bool(data.final[i] > 0.5))
        out[f] = auc(s, y)
    return out


def train_head(data: StepData, params: TrainParams, *, num_problems: int, engine=None, meta: dict | None = None) -> tuple[PRMHead, list[dict]]:
    """Try every (layers, kind), pick by validation AUC, refit the winner on all problems.

    Returns the head (with its validation metrics in `meta`) and one dict per candidate tried.
    """
    order = list(range(num_problems))
    random.Random(params.seed).shuffle(order)
    num_val = max(1, round(params.val_fraction * num_problems))
    val_problems = set(order[:num_val])
    train_rows = [i for i, p in enumerate(data.problem) if p not in val_problems]
    val_rows = [i for i, p in enumerate(data.problem) if p in val_problems]
    if not train_rows or not val_rows:
        raise DataError("too few labelled steps to train and validate a PRM head; label more problems.")
    tried = []
    for layers in params.layer_sets:
        if any(layer not in data.features for layer in layers):
            continue
        X = torch.cat([data.features[layer] for layer in layers], -1)
        for kind in params.kinds:
            head = fit_head(X[train_rows], data.value[train_rows], kind=kind, hidden_size=params.hidden_size, weight_decay=params.weight_decay, epochs=params.epochs, seed=params.seed)
            scores = head(X)
            val = prefix_aucs(scores, data, val_rows)
            step_auc = auc(scores[val_rows].tolist(), [bool(v > 0.5) for v in data.value[val_rows]])
            mean_auc = sum(v for v in val.values() if v is not None) / max(1, sum(v is not None for v in val.values()))
            tried.append({"layers": layers, "kind": kind, "val_auc_mean": mean_auc, "val_auc": {str(k): v for k, v in val.items()}, "val_step_value_auc": step_auc})
    if not tried:
        raise DataError("no layer set in `layer_sets` is available for this model.")
    best = max(tried, key=lambda t: t["val_auc_mean"])
    X = torch.cat([data.features[layer] for layer in best["layers"]], -1)
    head = fit_head(X, data.value, kind=best["kind"], hidden_size=params.hidden_size, weight_decay=params.weight_decay, epochs=params.epochs, seed=params.seed)
    head.layers = list(best["layers"])
    head.meta = {
        **(meta or {}),
        "kind": best["kind"],
        "validation": {k: best[k] for k in ("val_auc_mean", "val_auc", "val_step_value_auc")},
        "num_train_steps": len(data.value),
        "num_problems": num_problems,
        "num_val_problems": num_val,
    }
    if engine is not None:
        head.meta["model"] = model_fingerprint(engine.model)
    return head, tried
