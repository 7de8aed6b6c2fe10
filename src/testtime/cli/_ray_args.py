"""The `--ray` flags of `eval`, `optimize` and `bench spr`, and what each shard builds on its node.

Each shard's engine and scorer are made from the same flags as a local run (`make_engine`, `make_scorer`), on
the shard's node: in process on the GPU Ray gives it (`--ray-gpus-per-shard`), vLLM there, or a client of
`--base-url` servers.
"""

from __future__ import annotations

import argparse

from .._errors import ValidationError
from ._engine_args import backend_identity, make_engine, make_scorer, non_negative_float, non_negative_int

__all__ = ["add_ray_args", "ray_run", "build_eval_backend"]


def add_ray_args(p: argparse.ArgumentParser) -> None:
    from ..eval._ray import DEFAULT_MAX_RETRIES

    g = p.add_argument_group("Ray (pip install 'testtime[ray]'; docs/ray.md)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help="run the shards on a Ray cluster: ADDRESS is HOST:6379 of `ray start --head` or ray://HOST:10001; alone, $RAY_ADDRESS or a cluster on this machine, else a new local one (default: off)")
    g.add_argument("--ray-shards", type=non_negative_int("--ray-shards"), default=0, help="shards K, whole chunks each as with --shard I/K; 0: as many as the cluster's CPUs and GPUs hold at once (default: %(default)s)")
    g.add_argument("--ray-cpus-per-shard", type=non_negative_float("--ray-cpus-per-shard"), default=1.0, help="CPUs Ray reserves for each shard (default: %(default)s)")
    g.add_argument("--ray-gpus-per-shard", type=non_negative_float("--ray-gpus-per-shard"), default=0.0, help="GPUs each shard gets; 0.5 puts two shards on a GPU; 0 runs on CPU (default: %(default)s)")
    g.add_argument("--ray-max-retries", type=non_negative_int("--ray-max-retries"), default=DEFAULT_MAX_RETRIES, help="restarts of a shard whose process dies (node lost, out of memory); its chunk runs again (default: %(default)s)")


def ray_run(args, build, *, shard: str | None = None):
    """The `RayRun` the flags ask for, with `build` run on each shard's node; None without --ray. Fails in a second
    when Ray is missing, a --ray-* flag comes without --ray, or `shard` (--shard) with it."""
    from ..eval._ray import DEFAULT_MAX_RETRIES, RayRun, require_ray

    if args.ray is None:
        defaults = {"ray_shards": 0, "ray_cpus_per_shard": 1.0, "ray_gpus_per_shard": 0.0, "ray_max_retries": DEFAULT_MAX_RETRIES}
        changed = [k for k, v in defaults.items() if vars(args)[k] != v]
        if changed:
            flag = "--" + changed[0].replace("_", "-")
            raise ValidationError(f"{flag} applies to Ray runs only; add --ray [ADDRESS].", parameter=changed[0])
        return None
    if shard is not None:
        raise ValidationError("--ray splits the run into shards itself; drop --shard (or --ray to run one shard here).", parameter="shard", value=shard)
    require_ray()
    return RayRun(
        build=build,
        address=args.ray or None,
        num_shards=args.ray_shards,
        num_cpus_per_shard=args.ray_cpus_per_shard,
        num_gpus_per_shard=args.ray_gpus_per_shard,
        max_retries=args.ray_max_retries,
    )


def build_eval_backend(args, strategies: list[str]) -> tuple:
    """On a shard's node: (engine, scorer, backend identity), as a local `eval` makes them."""
    engine = make_engine(args)
    return engine, make_scorer(args, engine, strategies), backend_identity(args, engine)

