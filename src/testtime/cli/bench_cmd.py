"""`testtime bench spr`: the Speculative Rejection paper's evaluation against best-of-N (resumable)."""

from __future__ import annotations

import argparse
import functools
import os

from .._errors import ValidationError
from ._common import add_model_args, add_task_args, ints
from ._engine_args import add_engine_args, make_engine, scorer_options
from ._ray_args import add_ray_args, ray_run

HELP = "paper-style benchmarks: `bench spr` compares Speculative Rejection with best-of-N"


def _ints_or_auto(flag: str, extra: tuple[str, ...] = ()):
    def parse(text: str):
        if text.strip() in ("auto", *extra):
            return text.strip()
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer or one of {', '.join(repr(x) for x in ('auto', *extra))}, got {text!r}") from None

    return parse


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha takes comma-separated numbers, got {text!r}") from None


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("spr", help="Speculative Rejection vs best-of-N: improvement score, BoN-equivalent speedup, plot", description="Speculative Rejection vs best-of-N on one engine and scorer, as in Sun et al., NeurIPS 2024.")
    add_task_args(s)
    s.set_defaults(limit=20)
    s.add_argument("--bon-n", type=ints("--bon-n"), default=None, help="best-of-N budgets, comma-separated (default: 8, 16, ... up to SpR's initial n, at least 128)")
    s.add_argument("--baseline-n", type=int, default=None, help="N0 of the improvement score, BoN-N0 = 100 (default: the smallest --bon-n)")
    s.add_argument("--n", type=_ints_or_auto("--n"), default=256, help="SpR's initial candidates per problem, or 'auto' to fill the KV budget (default: %(default)s)")
    s.add_argument("--alpha", type=_floats, default=[0.3, 0.5, 0.7], help="SpR rejection fractions, comma-separated (default: 0.3,0.5,0.7)")
    s.add_argument("--decision-tokens", type=ints("--decision-tokens"), default=[32, 64, 128, 256], help="generated tokens per candidate at which SpR decides (default: 32,64,128,256)")
    s.add_argument("--kv-budget", type=_ints_or_auto("--kv-budget", extra=("bon",)), default=None, help="memory-triggered decisions: KV-cache tokens of a batch, 'auto' (half the free memory), or 'bon' (the paper's setup: per prompt, the memory of a BoN --batch-n batch); overrides --decision-tokens (default: off)")
    s.add_argument("--batch-n", type=int, default=32, help="the GPU-batch cost model's N0: the BoN batch one device's memory holds; BoN-N costs N / batch-n batches (default: %(default)s)")
    s.add_argument("--max-rows", type=int, default=256, help="SpR rows started together; problems per batch = max(1, max-rows // n) (default: %(default)s)")
    s.add_argument("--step-aligned", action="store_true", help="SpR decides only after every live candidate has finished its current step (blank line), so a step-level PRM scores complete steps (default: decide mid-step)")
    s.add_argument("--partial-scores", choices=("auto", "text", "hidden"), default="auto", help="how SpR scores live candidates: the scorer on the partial text, or a head on the live batch's hidden states (no extra forward); auto: hidden when the scorer supports it (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    s.add_argument("--chunk", type=int, default=4, help="problems per chunk, the resume unit (default: %(default)s)")
    s.add_argument("--out", default=None, help="run directory; rerunning the same command resumes it (default: runs/spr-<task>)")
    s.add_argument("--max-minutes", type=float, default=None, help="start no new chunk after this many minutes; rerun to continue (default: no limit)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    j = s.add_argument_group("LLM judge (win rate of SpR vs BoN-N0; skipped when no URL is given)")
    j.add_argument("--judge-url", default=None, help="OpenAI-compatible API root ending in /v1 (default: $TESTTIME_JUDGE_URL, else skip)")
    j.add_argument("--judge-model", default=None, help="judge model, e.g. gpt-4-turbo (default: $TESTTIME_JUDGE_MODEL)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the judge's API key (default: %(default)s)")
    j.add_argument("--judge-prompt", default=None, help="file with the judge prompt template ({question}, {a}, {b}; verdict [[A]]/[[B]]/[[C]]) (default: MT-Bench's pairwise prompt)")
    j.add_argument("--no-judge-swap", action="store_true", help="judge each pair in one order only (default: both orders)")
    add_model_args(s)
    add_engine_args(s)
    add_ray_args(s)


def _judge(args):
    from ..eval.judge import DEFAULT_JUDGE_PROMPT, JudgeConfig

    url = args.judge_url or os.environ.get("TESTTIME_JUDGE_URL")
    if not url:
        return None
    prompt = DEFAULT_JUDGE_PROMPT
    if args.judge_prompt:
        try:
            prompt = open(args.judge_prompt, encoding="utf-8").read()
        except OSError as exc:
            raise ValidationError(f"cannot read --judge-prompt {args.judge_prompt!r}: {exc.strerror}", parameter="judge_prompt") from None
    return JudgeConfig(base_url=url, model=args.judge_model or os.environ.get("TESTTIME_JUDGE_MODEL", ""), api_key=os.environ.get(args.judge_api_key_env) or None, prompt=prompt, swap=not args.no_judge_swap)


def run(args) -> int:
    from ..eval.spr_bench import SprBenchConfig, run_spr_bench
    from ..tasks import load_task

    config = SprBenchConfig(
        task=args.task,
        split=args.split,
        data=args.data,
        limit=args.limit,
        offset=args.offset,
        levels=args.levels,
        bon_n=args.bon_n,
        baseline_n=args.baseline_n,
        n=args.n,
        alphas=args.alpha,
        decision_tokens=args.decision_tokens,
        kv_budget=args.kv_budget,
        batch_n=args.batch_n,
        max_rows=args.max_rows,
        partial_scores=args.partial_scores,
        step_aligned=args.step_aligned,
        scorer=args.scorer,
        model=args.model,
        seed=args.seed,
        max_tokens=args.max_tokens if args.max_tokens is not None else (384 if args.task == "arith" else 512),
        temperature=args.temperature,
        top_p=args.top_p,
        chunk=args.chunk,
        out=args.out or os.path.join("runs", f"spr-{args.task}"),
    )
    judge = _judge(args)
    ray = ray_run(args, functools.partial(build_spr_backend, args, config.scorer, config.task))
    problems = load_task(config.task, split=config.split, data=config.data, limit=config.limit, offset=config.offset, levels=config.levels)
    if ray is not None:  # each shard makes its engine and scorer on its node
        run_spr_bench(config, problems=problems, judge=judge, progress=not args.no_progress, max_minutes=args.max_minutes, ray=ray)
        return 0
    engine, scorer, _ = build_spr_backend(args, config.scorer, config.task)
    run_spr_bench(config, engine=engine, scorer=scorer, problems=problems, judge=judge, progress=not args.no_progress, max_minutes=args.max_minutes)
    return 0


def build_spr_backend(args, scorer: str, task: str) -> tuple:
    """(engine, scorer, None): the bench's engine and scorer from the flags, here or on a Ray shard's node."""
    from ..eval.spr_bench import bench_scorer

    engine = make_engine(args)
    return engine, bench_scorer(scorer, engine, task, **scorer_options(args, scorer)), None
