"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import functools
import math

__all__ = ["ints", "names", "strategy_help", "scorer_help", "add_model_args", "add_local_engine_args", "add_task_args", "task_options", "default_max_tokens", "DTYPES"]

DTYPES = ("auto", "float32", "bfloat16", "float16")


def ints(flag: str):
    def parse(text: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes comma-separated integers, got {text!r}") from None

    return parse


def finite(flag: str):
    """A float flag that refuses inf and nan (argparse's `float` takes both)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{flag} takes a finite number, got {text!r}")
        return value

    return parse


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def strategy_help() -> str:
    """The registered strategies, for --strategy's help (generated, so a new strategy is listed)."""
    from ..strategies import STRATEGIES

    return ", ".join(STRATEGIES) + "; a spec NAME:KEY=VALUE[:KEY=VALUE] sets fields of the strategy's params (deepconf:keep=0.9)"


def scorer_help() -> str:
    """The scorer families, for --scorer's help (generated from the registry)."""
    from ..scorers import CONFIDENCE_METRICS, SCORERS

    names = [n for n in SCORERS if n != "confidence"]
    return (
        "scorer for the ranking strategies: default (in process: the built-in PRM head, else self-eval, which read the model; "
        "with --engine openai or vllm: confidence:mean, from the logprobs the server returns), "
        f"{', '.join(names)}, a head's PATH.safetensors, or confidence:METRIC (no model: the generator's own logprobs; "
        f"METRIC one of {', '.join(CONFIDENCE_METRICS)})"
    )


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a local directory or a hub id (default: %(default)s)")
    p.add_argument("--scorer", default="default", help=scorer_help() + " (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=None, help="new tokens per candidate (default: 512, arith 384)")
    p.add_argument("--temperature", type=finite("--temperature"), default=0.8, help="sampling temperature (default: %(default)s)")
    p.add_argument("--top-p", type=finite("--top-p"), default=1.0, help="nucleus sampling mass (default: %(default)s)")
    add_local_engine_args(p)


def add_local_engine_args(p: argparse.ArgumentParser) -> None:
    """The in-process engine's flags (`make_local_engine` reads them)."""
    p.add_argument("--max-batch-size", type=int, default=64, help="rows the engine decodes together (default: %(default)s)")
    p.add_argument(
        "--prefix-cache-tokens",
        type=int,
        default=8192,
        help="prompt tokens whose keys and values the engine keeps for later prompts that start the same way (automatic prefix caching; 0: off) (default: %(default)s)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="in-process model weights and activations: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16 or float16 (default: %(default)s)")


def add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="arith", help="arith (built in, offline), math500, gsm8k or jsonl (default: %(default)s)")
    p.add_argument("--split", default="test", help="task split (default: %(default)s)")
    p.add_argument("--data", default=None, help="local JSONL file (math500, gsm8k, jsonl); required offline")
    p.add_argument("--limit", type=int, default=None, help="use the first N problems (after --offset) (default: all)")
    p.add_argument("--offset", type=int, default=0, help="skip the first K problems, e.g. to keep a tuning part of a file apart from the test part (default: %(default)s)")
    p.add_argument("--levels", type=ints("--levels"), default=None, help="keep these difficulty levels, e.g. 1,2 (default: all)")
    p.add_argument("--problem-field", default=None, help="jsonl: field holding the problem (default: problem)")
    p.add_argument("--answer-field", default=None, help="jsonl: field holding the gold answer (default: answer)")


def task_options(args) -> dict:
    opts = {}
    if args.problem_field:
        opts["problem_field"] = args.problem_field
    if args.answer_field:
        opts["answer_field"] = args.answer_field
    return opts


def default_max_tokens(args) -> int:
    return args.max_tokens if args.max_tokens is not None else (384 if args.task == "arith" else 512)


def run_eval_from_args(args, *, strategies: list[str], n: list[int], out: str, before_model=None, use_ray: bool = False, **extra):
    """Build the `EvalConfig` of `eval`, `optimize` and `difficulty` from the shared task/model/engine flags, load
    the task and call `before_model(config)` (if given) before the model loads, so bad input fails in a second;
    run it, here or (`use_ray`: the command has the --ray flags) on the Ray cluster --ray names; returns (config,
    the run's result)."""
    from ..eval import EvalConfig, run_eval
    from ..eval._results import run_dir_lock
    from ..tasks import load_task
    from ._engine_args import backend_identity, make_engine, make_scorer, resolve_scorer
    from ._ray_args import build_eval_backend, ray_run

    ray = ray_run(args, functools.partial(build_eval_backend, args, strategies), shard=extra.get("shard")) if use_ray else None

    config = EvalConfig(
        task=args.task,
        split=args.split,
        data=args.data,
        limit=args.limit,
        offset=args.offset,
        levels=args.levels,
        strategies=strategies,
        n=n,
        scorer=resolve_scorer(args, strategies),
        model=args.model,
        seeds=args.seed,
        max_tokens=default_max_tokens(args),
        temperature=args.temperature,
        top_p=args.top_p,
        batch_problems=args.batch_problems,
        out=out,
        task_options=task_options(args),
        **extra,
    )
    problems = load_task(config.task, split=config.split, data=config.data, limit=config.limit, offset=config.offset, levels=config.levels, **config.task_options)
    if before_model is not None:
        before_model(config)
    # The writer lock before the model loads: a second eval into the same --out, or an --out that cannot be a
    # directory, fails in a second (run_eval takes the lock again, in the same process).
    with run_dir_lock(config.out):
        if ray is not None:  # each shard makes its engine and scorer on its node
            return config, run_eval(config, problems=problems, progress=not args.no_progress, ray=ray)
        engine = make_engine(args)
        config.backend = backend_identity(args, engine)  # what resume checks besides the flags: device, dtype, engine
        scorer = make_scorer(args, engine, strategies)
        return config, run_eval(config, engine=engine, scorer=scorer, problems=problems, progress=not args.no_progress)
