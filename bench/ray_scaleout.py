"""The same eval as one process and as K Ray workers (`run_eval(..., ray=RayRun(...))`): wall time side by side,
per-shard times, and an estimate for more workers from the per-chunk numbers.

Setup (defaults): the first `--problems 48` arith test problems, majority and weighted (the default scorer) at
n = 1, 2, 4, 8, 16 (one generation at 16 per problem), chunks of `--batch-problems 8`, the embedded model in
float32 on CPU. Both runs use the same total threads: the single process `--workers x --threads` torch threads,
each Ray worker `--threads` (its CPUs). A short warm-up (one problem, 16 tokens) runs first in this process and
is excluded; the Ray run's time includes what a real one pays: starting each worker, loading its model.

Prints the setup, both wall times and their ratio, each shard's chunks and compute time (the sum of its chunks'
generation time, read from the rows), the Ray overhead (wall minus the slowest shard's compute), whether the
rows equal the single process's (they must), and for K = 1, 2, 4, ... workers the estimated wall time:
overhead + the slowest shard's compute, with the measured per-chunk times split as `--shard I/K` splits them.
The estimate assumes a worker per core set (or GPU) that does not slow the others down.

    python bench/ray_scaleout.py [--problems 48] [--n 16] [--workers 2] [--threads 1] [--device cpu] [--gpus-per-worker 0]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from testtime.eval import EvalConfig, run_eval
from testtime.eval._ray import RayRun
from testtime.eval._shard import shard_bounds


def build(model: str, device: str, threads: int):
    """A worker's engine and scorer, made on its node (pickled by value: this script is `__main__`)."""
    from testtime.engines import TransformersEngine
    from testtime.scorers import load_scorer

    torch.set_num_threads(threads)
    engine = TransformersEngine(model, device=device, dtype=torch.float32)
    return engine, load_scorer("default", engine=engine), {"engine": "transformers", "device": engine.device.type, "dtype": "float32"}


def chunk_seconds(out: Path, chunks: list[list[str]]) -> list[float]:
    """Generation time of each chunk: the majority rows' wall times (one shared generation per problem, its
    time split over the chunk's problems, `strategies._base`) added up per chunk."""
    wall = {r["problem_id"]: r["usage"]["wall_time"] for r in map(json.loads, (out / "results.jsonl").read_text().splitlines()) if r["strategy"] == "majority"}
    return [sum(wall[p] for p in c) for c in chunks]


def rows_without_wall(out: Path) -> list[str]:
    rows = []
    for r in map(json.loads, (out / "results.jsonl").read_text().splitlines()):
        r["usage"].pop("wall_time")
        for at in r["by_n"].values():
            at.pop("wall_time")
        rows.append(json.dumps(r, sort_keys=True))
    return sorted(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=48, help="arith test problems (default: %(default)s)")
    ap.add_argument("--n", type=int, default=16, help="largest budget; budgets are the powers of 2 up to it (default: %(default)s)")
    ap.add_argument("--batch-problems", type=int, default=8, help="problems per chunk, the unit a shard takes (default: %(default)s)")
    ap.add_argument("--max-tokens", type=int, default=384, help="new tokens per candidate (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (shards) K (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per Ray worker; the single process gets workers x threads (default: %(default)s)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    ap.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray worker, with --device cuda (default: %(default)s)")
    ap.add_argument("--model", default="default", help="model (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--out", default=None, help="directory for both runs (default: a new temporary one)")
    args = ap.parse_args()

    import ray

    from testtime.engines import Request, SamplingParams
    from testtime.tasks import load_task

    budgets = [2**k for k in range(args.n.bit_length()) if 2**k <= args.n]
    out = Path(args.out or tempfile.mkdtemp(prefix="ray-scaleout-"))
    problems = load_task("arith", split="test", limit=args.problems)
    config = functools.partial(EvalConfig, task="arith", strategies=["majority", "weighted"], n=budgets, max_tokens=args.max_tokens, batch_problems=args.batch_problems, seeds=[0])
    chunks = [[p.id for p in problems[i : i + args.batch_problems]] for i in range(0, len(problems), args.batch_problems)]
    print(
        f"setup: arith test, {len(problems)} problems in {len(chunks)} chunks of {args.batch_problems}; majority + weighted, n = {budgets}; "
        f"max_tokens {args.max_tokens}, T 0.8; model {args.model}, float32 on {args.device}; torch {torch.__version__}, ray {ray.__version__}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; one process: {args.workers * args.threads} threads; "
        f"Ray: {args.workers} workers x {args.threads} threads" + (f", {args.gpus_per_worker:g} GPU each" if args.gpus_per_worker else "")
    )

    engine, scorer, _ = build(args.model, args.device, args.workers * args.threads)
    engine.generate([Request(messages=problems[0].chat())], SamplingParams(max_tokens=16, seed=0))  # warm-up, excluded
    t0 = time.perf_counter()
    report = run_eval(config(out=str(out / "one")), engine=engine, scorer=scorer, problems=problems, progress=False, log=lambda *_: None)
    one = time.perf_counter() - t0
    del engine, scorer

    t0 = time.perf_counter()
    src = str(Path(__file__).resolve().parents[1] / "src")
    ray.init(num_cpus=args.workers * args.threads, num_gpus=int(args.workers * args.gpus_per_worker + 0.999) if args.gpus_per_worker else 0, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": f"{src}:${{PYTHONPATH}}"}})
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = RayRun(build=functools.partial(build, args.model, args.device, args.threads), num_shards=args.workers, num_cpus_per_shard=args.threads, num_gpus_per_shard=args.gpus_per_worker)
    run_eval(config(out=str(out / "ray")), problems=problems, progress=False, log=lambda *_: None, ray=run)
    wall = time.perf_counter() - t0
    ray.shutdown()

    print(report.table)
    print(f"\none process:  {one:8.1f} s")
    print(f"Ray, {args.workers} workers: {wall:8.1f} s (+ {start:.1f} s to start the local cluster)  -> {one / wall:.2f}x")
    per_chunk = chunk_seconds(out / "ray", chunks)
    shards = []
    for i in range(args.workers):
        lo, hi = shard_bounds(len(chunks), i, args.workers)
        shards.append(sum(per_chunk[lo:hi]))
        print(f"  shard {i}/{args.workers}: chunks {lo}..{hi - 1}, compute {shards[-1]:7.1f} s")
    overhead = wall - max(shards)
    print(f"  overhead (wall - slowest shard: worker start, model load, transfers): {overhead:.1f} s")
    print(f"rows equal to the one-process run's (wall times aside): {rows_without_wall(out / 'ray') == rows_without_wall(out / 'one')}")
    print("estimate for K workers (overhead + slowest shard, per-chunk times of the Ray run):")
    k = 1
    while k <= len(chunks):
        slowest = max(sum(per_chunk[slice(*shard_bounds(len(chunks), i, k))]) for i in range(k))
        print(f"  K = {k:3d}: {overhead + slowest:8.1f} s  ({sum(per_chunk) / slowest:.2f}x the compute of one worker)")
        k *= 2
    print(f"runs: {out}")


if __name__ == "__main__":
    main()
