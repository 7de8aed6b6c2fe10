"""`testtime solve "question"`: answer one problem and show every candidate with its answer and score."""

from __future__ import annotations

from .._errors import UnknownNameError, ValidationError
from ._common import add_model_args, strategy_help
from ._engine_args import make_local_engine

HELP = "answer one question and show the candidates"
DEFAULT_N = 8


def add_arguments(p) -> None:
    p.add_argument("question", help="the problem text")
    p.add_argument("--task", default="math500", help="whose prompt to use: math500, gsm8k or arith (default: %(default)s)")
    p.add_argument("--strategy", default="weighted", help=strategy_help() + " (default: %(default)s)")
    p.add_argument("--n", type=int, default=None, help=f"candidates (default: the spec's n= if it sets one, else {DEFAULT_N})")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--policy", default=None, help="policy file for --strategy optimal, written by `testtime optimize` (default: none)")
    add_model_args(p)


def run(args) -> int:
    from ..engines import SamplingParams
    from ..scorers import load_scorer
    from ..strategies import get_strategy, make_strategy, parse_strategy_spec
    from ..strategies._spec import strategy_params
    from ..strategies.optimal import Policy
    from ..tasks import (
        ARITH_FEW_SHOT,
        ARITH_SYSTEM_PROMPT,
        GSM8K_SYSTEM_PROMPT,
        MATH_SYSTEM_PROMPT,
        Problem,
        build_messages,
    )

    prompts = {"arith": (ARITH_SYSTEM_PROMPT, ARITH_FEW_SHOT), "gsm8k": (GSM8K_SYSTEM_PROMPT, ()), "math500": (MATH_SYSTEM_PROMPT, ())}
    if args.task not in prompts:
        raise UnknownNameError("prompt style", args.task, prompts)
    system, shots = prompts[args.task]
    cls = get_strategy(args.strategy)
    # Checked before the model loads: the budget, the policy file, and --max-tokens 0 (SamplingParams refuses it,
    # it is not read as the default).
    if args.n is not None and not args.n >= 1:
        raise ValidationError(f"--n must be an integer >= 1, got {args.n}.", parameter="n", value=args.n)
    name, spec_params = parse_strategy_spec(args.strategy)
    n = args.n if args.n is not None or "n" in spec_params else DEFAULT_N
    strategy_params(cls, name, spec_params, n)  # the spec's fields and the budget, before the model loads
    policy = None
    if cls.needs_policy:
        if args.policy is None:
            raise ValidationError(f"strategy {cls.name!r} needs --policy FILE (written by `testtime optimize`).", parameter="policy")
        policy = Policy.load(args.policy)
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=512 if args.max_tokens is None else args.max_tokens)
    engine = make_local_engine(args)
    scorer = load_scorer(args.scorer, engine=engine) if cls.needs_scorer else None
    problem = Problem(id="cli", question=args.question, messages=build_messages(args.question, system_prompt=system, few_shot=shots), last_number_fallback=args.task != "math500")
    strategy = make_strategy(args.strategy, engine, scorer, n=n, sampling=sampling, seed=args.seed, policy=policy)
    result = strategy.solve(problem)[0]
    for c in result.candidates:
        mark = "*" if c.index == result.selected else " "
        score = f"{c.score:.3f}" if c.score is not None else "  -  "
        first = c.text.strip().splitlines()[0][:70] if c.text.strip() else ""
        print(f"{mark} [{c.index:>2}] answer={str(c.answer):<12} score={score} tokens={c.num_tokens:<4} {first}")
    print(f"\nanswer: {result.answer}  ({args.strategy}, n={len(result.candidates)}, {result.usage.num_generated_tokens} generated tokens, {result.usage.wall_time:.1f}s)")
    return 0
