"""Flags that pick the backend (in-process, vLLM, or OpenAI-compatible servers) and a remote reward model.

Shared by `eval` and `serve`, so shards of an eval can run against a fleet of servers
(`--engine openai --base-url URL1,URL2`) and `serve` can front one.

The default scorer depends on the engine. In process it is the built-in PRM head (or self-eval), which read the
generator's hidden states and next-token distribution; a server exposes neither, so with `--engine openai` or
`vllm` "default" is `confidence:mean` (DeepConf's mean token confidence), computed from the top-k logprobs every
OpenAI-compatible server returns with the completion: no extra model and no extra request
(`scorers.default_scorer`). Every scorer is built by `scorers.load_scorer`; `make_scorer` only adds the flags
its family reads.
"""

from __future__ import annotations

import argparse
import json
import math
import os

from .._errors import ValidationError
from ._common import names

__all__ = ["add_engine_args", "make_engine", "make_local_engine", "make_scorer", "scorer_options", "backend_identity", "resolve_scorer", "ENGINES", "REMOTE_DEFAULT_SCORER"]

ENGINES = ("transformers", "vllm", "openai")
REMOTE_DEFAULT_SCORER = "confidence:mean"
"""What `--scorer default` means on an engine without model access (vllm, openai): see the module docstring.
The same as `scorers.DEFAULT_REMOTE_SCORER`; here so the name a run records is known before the model loads."""


def json_object(text: str) -> dict:
    """--extra-body: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--extra-body takes a JSON object, e.g. '{{\"min_p\": 0.05}}'; {text!r} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--extra-body takes a JSON object, got {type(value).__name__} {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"--request-timeout takes a number of seconds > 0, got {text!r}")
    return value


def non_negative_int(flag: str):
    return _non_negative(flag, int, "an integer")


def non_negative_float(flag: str):
    """A float flag >= 0 that refuses inf and nan (argparse's `float` takes both)."""
    return _non_negative(flag, float, "a finite number")


def _non_negative(flag: str, kind: type, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not (value >= 0 and math.isfinite(value)):  # NaN fails the first test
            raise argparse.ArgumentTypeError(f"{flag} takes {what} >= 0, got {text!r}")
        return value

    return parse


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--engine", choices=ENGINES, default="transformers", help="transformers (in-process), vllm (in-process, GPU) or openai (any OpenAI-compatible server) (default: %(default)s)")
    g.add_argument("--base-url", type=names, default=None, help="openai engine: server URL(s) ending in /v1, comma-separated, used round-robin (default: http://127.0.0.1:8000/v1)")
    g.add_argument("--api-key-env", default=None, help="openai engine / remote scorer: name of the environment variable holding the API key (default: send none)")
    g.add_argument("--endpoint", choices=("chat", "completions"), default="chat", help="openai engine: API endpoint; completions applies the chat template here and needs --tokenizer (default: %(default)s)")
    g.add_argument("--tokenizer", default=None, help="openai engine: tokenizer name or directory, for --endpoint completions (default: none)")
    g.add_argument("--prompt-format", choices=("auto", "ids", "text"), default="auto", help="openai engine, --endpoint completions: send the templated prompt as token ids (exact; vLLM, SGLang) or as text (servers that take only strings, e.g. transformers serve); auto sends ids and switches to text for good when the server refuses them (default: %(default)s)")
    g.add_argument("--no-vllm-extensions", action="store_true", help="openai engine: never send vLLM's extra request fields (for strict servers)")
    g.add_argument("--extra-body", type=json_object, default=None, help="openai engine: a JSON object merged into every request body, for fields a server needs beyond OpenAI's (docs/serving.md shows the one `transformers serve` needs to sample at all) (default: none)")
    g.add_argument("--request-timeout", type=positive_seconds, default=600.0, help="openai engine / remote scorer: seconds one HTTP attempt may take before it counts as failed (default: %(default)s)")
    g.add_argument("--max-retries", type=non_negative_int("--max-retries"), default=4, help="openai engine / remote scorer: retries of a request after a 408/429/5xx, a timeout or a dropped connection; 0 fails at once (default: %(default)s)")
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
            max_retries=args.max_retries,
            timeout=args.request_timeout,
            extra_body=args.extra_body,
            prompt_format=args.prompt_format,
        )
    if args.engine == "vllm":
        from ..engines import VLLMEngine

        return VLLMEngine(args.model, tensor_parallel_size=args.tensor_parallel_size)
    return make_local_engine(args)


def check_device(device: str | None) -> None:
    """--device: a torch device this machine has (a typo or an absent GPU is a one-line error, not a traceback)."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ValidationError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}.", parameter="device", value=device) from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, False):
        have = ", ".join(k for k, ok in available.items() if ok)
        raise ValidationError(f"--device {device!r} is not available on this machine (available: {have}).", parameter="device", value=device)


def make_local_engine(args):
    """The in-process engine of `--model`, `--device`, `--dtype`, `--max-batch-size` and `--prefix-cache-tokens`."""
    import torch

    from ..engines import TransformersEngine

    check_device(args.device)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return TransformersEngine(args.model, device=args.device, dtype=dtype, max_batch_size=args.max_batch_size, prefix_cache_tokens=args.prefix_cache_tokens)


def resolve_scorer(args, strategies=None) -> str:
    """The scorer name `--scorer` means with this engine: "default" on a remote engine is `REMOTE_DEFAULT_SCORER`
    (the in-process default reads the model, which a server does not expose). With `strategies` given and none
    of them ranking candidates, "default" stays as it is: no scorer runs, and runs stored before this rule
    recorded "default" and resume unchanged."""
    from ..strategies import get_strategy

    if strategies is not None and not any(get_strategy(s).needs_scorer for s in strategies):
        return args.scorer
    if args.scorer == "default" and getattr(args, "engine", "transformers") != "transformers":
        return REMOTE_DEFAULT_SCORER
    return args.scorer


def backend_identity(args, engine) -> dict:
    """What generates the rows, recorded in run.json and checked on resume: the engine kind, and for the
    in-process engine the device type and dtype it actually runs in (`--dtype auto` is bfloat16 on a GPU and
    float32 on a CPU); for a server, the endpoint and extra request fields, which change what it returns."""
    kind = getattr(args, "engine", "transformers")
    if kind == "transformers":
        return {"engine": kind, "device": engine.device.type, "dtype": str(engine.model.dtype).removeprefix("torch.")}
    if kind == "openai":
        return {"engine": kind, "endpoint": args.endpoint, **({"extra_body": args.extra_body} if args.extra_body else {})}
    return {"engine": kind}


def scorer_options(args, name: str) -> dict:
    """The flags scorer `name` reads, as `load_scorer` options: the reward model, batch size and device for the
    families that load their own (`MODEL_SCORERS`), the server and client settings for "remote", none for the
    others (the in-process scorers read the engine; confidence reads logprobs)."""
    from ..scorers import MODEL_SCORERS

    if name in MODEL_SCORERS:
        return {"model": args.scorer_model, "batch_size": args.scorer_batch_size, "device": args.device}
    if name != "remote":
        return {}
    from ..scorers.remote import DEFAULT_SCORER_URL

    return {
        "model": args.scorer_model,
        "base_url": args.scorer_url or DEFAULT_SCORER_URL,
        "endpoint": args.scorer_endpoint,
        "api_key": _api_key(args),
        "max_concurrency": args.max_concurrency,
        "max_retries": args.max_retries,
        "timeout": args.request_timeout,
    }


def make_scorer(args, engine, strategies=None):
    """The scorer `--scorer` names on this engine (`resolve_scorer`), built by `load_scorer` with the flags its
    family reads. With `strategies` given and none of them ranking candidates: None (no reward model loads)."""
    from ..scorers import load_scorer
    from ..strategies import get_strategy

    if strategies is not None and not any(get_strategy(s).needs_scorer for s in strategies):
        return None
    name = resolve_scorer(args, strategies)
    return load_scorer(name, engine=engine, **scorer_options(args, name))
