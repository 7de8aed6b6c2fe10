"""`testtime serve`: an OpenAI-compatible HTTP service running strategies on any engine."""

from __future__ import annotations

import os
import sys

from .._errors import MissingDependencyError, ValidationError, check
from ._common import add_model_args
from ._engine_args import add_engine_args, make_engine, make_scorer

HELP = "serve strategies over an OpenAI-compatible API (POST /v1/chat/completions)"

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback exposes the service, so pair it with --require-api-key-env (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 1..65535, or 0 for any free one (default: %(default)s)")
    p.add_argument("--served-model-name", default=None, help="the `model` clients send (default: the --model value)")
    p.add_argument("--require-api-key-env", default=None, help="name of an environment variable holding the key clients must send as a bearer token (default: no auth)")
    p.add_argument("--strategy", default="majority", help="strategy for requests that name none (default: %(default)s)")
    p.add_argument("--policy", default=None, help="compute-optimal policy file (from `testtime optimize`) for requests asking for strategy 'optimal'")
    p.add_argument("--budget", type=int, default=4, help="candidates for requests that name no budget (default: %(default)s)")
    p.add_argument("--max-budget", type=int, default=32, help="largest budget a request may ask for (default: %(default)s)")
    p.add_argument("--max-tokens-limit", type=int, default=2048, help="largest max_tokens a request may ask for (default: %(default)s)")
    p.add_argument("--max-message-chars", type=int, default=32_000, help="largest total message text per request (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body (default: %(default)s)")
    p.add_argument("--max-concurrent-requests", type=int, default=64, help="requests queued or running at once; more get 429 (default: %(default)s)")
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="how long to collect requests into one batch (default: %(default)s)")
    p.add_argument("--max-concurrent-solves", type=int, default=8, help="with --engine openai: groups of requests solved at once, each its own strategy call (default: %(default)s)")
    p.add_argument("--prefill-chunk", type=int, default=None, help="in-process engine: prompt tokens prefilled per step while other requests decode, longer prompts in slices (default: 256 on CPU, 2048 on GPU; 0: whole prompts)")
    p.add_argument("--last-number-fallback", action="store_true", help="vote on an unmarked final number when a candidate has no boxed answer")
    p.add_argument("--graceful-shutdown-s", type=float, default=30.0, help="on SIGTERM, how long requests in progress may finish before their connections close (default: %(default)s)")
    p.add_argument("--log-level", default="info", help="uvicorn log level (default: %(default)s)")
    add_model_args(p)
    add_engine_args(p)


def build_app(args):
    """The app the flags describe (loads the model): separate from `run` so tests can build it."""
    from ..serve import ServeConfig, create_app

    check(0 <= args.port <= 65535, f"--port must be in 0..65535 (0 picks a free port), got {args.port}.", parameter="port", value=args.port)
    check(args.graceful_shutdown_s >= 0, f"--graceful-shutdown-s must be >= 0, got {args.graceful_shutdown_s}.", parameter="graceful_shutdown_s", value=args.graceful_shutdown_s)
    key = None
    if args.require_api_key_env:
        key = os.environ.get(args.require_api_key_env)
        if not key:
            raise ValidationError(f"--require-api-key-env names {args.require_api_key_env!r}, but that environment variable is empty or unset.", parameter="require_api_key_env")
    policy = None
    if args.policy:
        from ..strategies.optimal import Policy

        policy = Policy.load(args.policy)  # a missing or malformed file fails here, before the model loads
    config = ServeConfig(
        policy=policy,
        model_name=args.served_model_name or args.model,
        api_key=key,
        default_strategy=args.strategy,
        default_budget=args.budget,
        max_budget=args.max_budget,
        default_max_tokens=512 if args.max_tokens is None else args.max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        temperature=args.temperature,
        top_p=args.top_p,
        max_message_chars=args.max_message_chars,
        max_body_bytes=args.max_body_bytes,
        max_concurrent_requests=args.max_concurrent_requests,
        batch_window_ms=args.batch_window_ms,
        max_concurrent_solves=args.max_concurrent_solves,
        prefill_chunk=args.prefill_chunk,
        last_number_fallback=args.last_number_fallback,
    )
    engine = make_engine(args)
    scorer = None if args.scorer == "none" else make_scorer(args, engine)  # remote engines: confidence:mean (_engine_args)
    return create_app(engine, scorer, config)


def run(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "serve", "testtime serve") from None
    app = build_app(args)
    if args.host not in LOOPBACK and not args.require_api_key_env:
        print(f"warning: serving on {args.host} without authentication; anyone who reaches this port can use it (set --require-api-key-env)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=args.graceful_shutdown_s)
    return 0
