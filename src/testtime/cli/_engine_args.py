"""Flags that pick the backend (in-process, vLLM, or OpenAI-compatible servers) and a remote reward model.

Shared by `eval` and `serve`, so shards of an eval can run against a fleet of servers
(`--engine openai --base-url URL1,URL2`) and `serve` can front one.
"""

from __future__ import annotations

import argparse
import os

from .._errors import ValidationError
from ._common import names

__all__ = ["add_engine_args", "make_engine", "make_local_engine", "make_scorer", "ENGINES"]

ENGINES = ("transformers", "vllm", "openai")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--engine", choices=ENGINES, default="transformers", help="transformers (in-process), vllm (in-process, GPU) or openai (any OpenAI-compatible server) (default: %(default)s)")
    g.add_argument("--base-url", type=names, default=None, help="openai engine: server URL(s) ending in /v1, comma-separated, used round-robin (default: http://127.0.0.1:8000/v1)")
    g.add_argument("--api-key-env", default=None, help="openai engine / remote scorer: name of the environment variable holding the API key (default: send none)")
    g.add_argument("--endpoint", choices=("chat", "completions"), default="chat", help="openai engine: API endpoint; completions applies the chat template here and needs --tokenizer (default: %(default)s)")
    g.add_argument("--tokenizer", default=None, help="openai engine: tokenizer name or directory, for --endpoint completions (default: none)")
    g.add_argument("--no-vllm-extensions", action="store_true", help="openai engine: never send vLLM's extra request fields (for strict servers)")
    g.add_argument("--max-concurrency", type=int, default=64, help="openai engine / remote scorer: requests in flight at once (default: %(default)s)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm engine: GPUs per model (default: %(default)s)")
    g.add_argument("--scorer-url", type=names, default=None, help="--scorer remote: reward server root URL(s), no /v1 (default: http://127.0.0.1:8001)")
    g.add_argument("--scorer-model", default=None, help="--scorer remote: the served reward model's name; --scorer rlhflow/math-shepherd/qwen-prm/skywork-prm/orm: the reward model's local directory or hub id (required with those)")
    g.add_argument("--scorer-batch-size", type=int, default=8, help="--scorer rlhflow/math-shepherd/qwen-prm/skywork-prm/orm/prm-head: sequences per reward-model forward pass (default: %(default)s)")
    g.add_argument("--scorer-endpoint", choices=("pooling", "classify"), default="pooling", help="--scorer remote: reward endpoint (default: %(default)s)")


def _api_key(args) -> str | None:
    if not args.api_key_env:
        return None
    key = os.environ.get(args.api_key_env)
    if not key:
        raise ValidationError(f"--api-key-env names {args.api_key_env!r}, but that environment variable is empty or unset.", parameter="api_key_env")
    return key


def make_engine(args):
    """The engine the flags describe (the model loads here)."""
    if args.engine == "openai":
        from ..engines import OpenAIEngine
        from ..engines.openai_engine import DEFAULT_BASE_URL

        return OpenAIEngine(
            args.model,
            base_url=args.base_url or DEFAULT_BASE_URL,
            api_key=_api_key(args),
            endpoint=args.endpoint,
            tokenizer=args.tokenizer,
            vllm_extensions=not args.no_vllm_extensions,
            max_concurrency=args.max_concurrency,
        )
    if args.engine == "vllm":
        from ..engines import VLLMEngine

        return VLLMEngine(args.model, tensor_parallel_size=args.tensor_parallel_size)
    return make_local_engine(args)


def make_local_engine(args):
    """The in-process engine of `--model`, `--device`, `--dtype` and `--max-batch-size`."""
    import torch

    from ..engines import TransformersEngine

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return TransformersEngine(args.model, device=args.device, dtype=dtype, max_batch_size=args.max_batch_size)


def make_scorer(args):
    """A `RemoteScorer` for `--scorer remote`, a local reward model for the families that load their own
    (`--scorer rlhflow --scorer-model PATH`); None otherwise (the eval loads named scorers itself)."""
    from ..scorers import MODEL_SCORERS

    if args.scorer in MODEL_SCORERS:
        from ..scorers import load_scorer

        return load_scorer(args.scorer, model=args.scorer_model, batch_size=args.scorer_batch_size, device=args.device)
    if args.scorer != "remote":
        return None
    from ..scorers import RemoteScorer
    from ..scorers.remote import DEFAULT_SCORER_URL

    if not args.scorer_model:
        raise ValidationError("--scorer remote needs --scorer-model, the served reward model's name.", parameter="scorer_model")
    return RemoteScorer(
        args.scorer_model,
        base_url=args.scorer_url or DEFAULT_SCORER_URL,
        endpoint=args.scorer_endpoint,
        api_key=_api_key(args),
        max_concurrency=args.max_concurrency,
    )
