"""`--ray`: an eval's chunks on a local Ray cluster (2 CPUs, started once for the module) give exactly the rows of
an unsharded run; a rerun skips finished chunks; a worker killed mid-shard is retried without duplicate rows; a
shard that keeps failing ends in one line naming the shard, the node and the cause; no Ray is a one-line error.

The shards' engines are scripted (`handler`); every call logs "pid problem" to a file, so a test sees which
process solved what."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from _rows import without_measurements

import testtime
from testtime import EngineError, ValidationError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval import EvalConfig, ResultsFile, run_eval
from testtime.eval._ray import RayRun
from testtime.eval.spr_bench import SprBenchConfig, run_spr_bench
from testtime.scorers import ScriptedScorer
from testtime.tasks import Problem

# 11 problems in chunks of 2: 6 chunks; 2 shards own chunks 0-2 (p0..p5) and 3-5 (p6..p10), as --shard I/2.
PROBLEMS = [Problem(id=f"p{k}", question=f"q{k}", answer="5", level=1 + k % 3) for k in range(11)]
SHARD0 = {f"p{k}" for k in range(6)}


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    # Workers import testtime from this checkout (worktree or clone, installed or not) and this module's
    # functions (pickled by reference) from tests/.
    src, tests = Path(testtime.__file__).resolve().parents[1], Path(__file__).resolve().parent
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": f"{src}:{tests}"}})
    yield ray
    ray.shutdown()


def handler(log: str, crash: str | None, how: str, request, params, index):
    """Problem k's candidate i answers (k + i * (k % 3)) % 4 + 4 (gold is 5). On problem `crash` the engine
    fails, `how`: "raise" an error, "exit" the process every time, or exit once (`how` is then a marker file,
    created just before)."""
    pid = request.messages[-1]["content"][1:]
    if index == 0:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} p{pid}\n")
    if f"p{pid}" == crash:
        if how == "raise":
            raise RuntimeError("the engine broke\nsecond line")
        if how == "exit":
            os._exit(1)
        if not os.path.exists(how):
            Path(how).touch()
            os._exit(1)
    k = int(pid)
    answer = (k + index * (k % 3)) % 4 + 4
    return "Step 1: think.\n\n" * (1 + k % 2) + f"Therefore, the final answer is: $\\boxed{{{answer}}}$."


def scorer():
    return ScriptedScorer(lambda q, steps: [0.8 if "{5}" in steps[-1] else 0.3 + 0.1 * len(steps)])


def build(log: str, crash: str | None = None, how: str = "exit"):
    """A shard's backend, made on its node."""
    return ScriptedEngine(functools.partial(handler, log, crash, how)), scorer(), {"engine": "scripted"}


def config(out, **kw) -> EvalConfig:
    base = dict(task="scripted", strategies=["majority", "bon", "weighted", "greedy"], n=[1, 2, 4], seeds=[0, 1], out=str(out), batch_problems=2)
    return EvalConfig(**{**base, **kw})


def quiet(*_):
    pass


def on_ray(cfg, ray_build, **kw):
    return run_eval(cfg, problems=PROBLEMS, progress=False, log=quiet, ray=RayRun(build=ray_build, **{"num_shards": 2, **kw}))


def solved(log: Path) -> list[tuple[int, str]]:
    return [(int(pid), p) for pid, p in (line.split() for line in log.read_text().splitlines())] if log.exists() else []


def canonical(path: Path) -> list[dict]:
    """The rows of a results file in the unsharded order (seed, problem, strategy); the Ray driver writes them
    as chunks finish."""
    rows = ResultsFile(path / "results.jsonl").load()
    order = {p.id: i for i, p in enumerate(PROBLEMS)}
    strategies = ["majority", "bon", "weighted", "greedy"]
    return sorted((without_measurements(r) for r in rows), key=lambda r: (r["seed"], order[r["problem_id"]], strategies.index(r["strategy"])))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The unsharded run, in this process."""
    out = tmp_path_factory.mktemp("full")
    log = out / "solved.log"
    run_eval(config(out), engine=build(str(log))[0], scorer=scorer(), problems=PROBLEMS, progress=False, log=quiet)
    return out


def calls_per_problem(full: Path) -> int:
    """Engine calls per problem and seed in the unsharded run (one for the sampling strategies, one for greedy)."""
    return [p for _, p in solved(full / "solved.log")].count("p0") // 2


def test_ray_run_equals_the_unsharded_run(cluster, full, tmp_path):
    log = tmp_path / "solved.log"
    report = on_ray(config(tmp_path / "ray"), functools.partial(build, str(log)))
    assert len(ResultsFile(tmp_path / "ray" / "results.jsonl").load()) == 11 * 4 * 2  # no row twice
    assert canonical(tmp_path / "ray") == canonical(full)
    expected = json.loads((full / "summary.json").read_text())
    got = json.loads((tmp_path / "ray" / "summary.json").read_text())
    for row in expected + got:
        row.pop("mean_wall_time")
    assert got == expected and {r.strategy for r in report.summary} == {"majority", "bon", "weighted", "greedy"}
    assert (tmp_path / "ray" / "accuracy_vs_n.png").stat().st_size > 10_000
    # Two worker processes, each solving its shard's problems (both seeds), none of them in this process.
    by_pid: dict[int, set[str]] = {}
    for pid, p in solved(log):
        by_pid.setdefault(pid, set()).add(p)
    assert sorted(by_pid.values(), key=lambda ps: "p0" not in ps) == [SHARD0, {p.id for p in PROBLEMS} - SHARD0]
    assert os.getpid() not in by_pid
    identity = json.loads((tmp_path / "ray" / "run.json").read_text())["identity"]
    assert identity["backend"] == {"engine": "scripted"} and identity["shard"] is None


def test_more_shards_than_the_cluster_holds_run_in_turn(cluster, full, tmp_path):
    """3 shards of 1 CPU on 2 CPUs: the third starts once a finished shard gives its CPU back."""
    log = tmp_path / "solved.log"
    on_ray(config(tmp_path / "ray"), functools.partial(build, str(log)), num_shards=3)
    by_pid: dict[int, set[str]] = {}
    for pid, p in solved(log):
        by_pid.setdefault(pid, set()).add(p)
    assert sorted(by_pid.values(), key=lambda ps: min(int(p[1:]) for p in ps)) == [{"p0", "p1", "p2", "p3"}, {"p4", "p5", "p6", "p7"}, {"p8", "p9", "p10"}]
    assert canonical(tmp_path / "ray") == canonical(full)


def test_a_rerun_skips_finished_chunks_and_a_failed_shard_keeps_the_others_rows(cluster, full, tmp_path):
    out, log = tmp_path / "run", tmp_path / "solved.log"
    # The driver dies after the first 3 chunks of seed 0 (a local run that crashes mid-way leaves the same file).
    calls = {"n": 0}

    def dies(request, params, index):
        calls["n"] += 1
        if request.messages[-1]["content"] == "q6":
            raise KeyboardInterrupt
        return handler(str(tmp_path / "local.log"), None, "exit", request, params, index)

    with pytest.raises(KeyboardInterrupt):
        run_eval(config(out), engine=ScriptedEngine(dies), scorer=scorer(), problems=PROBLEMS, progress=False, log=quiet)
    assert len(ResultsFile(out / "results.jsonl").load()) == 6 * 4
    # On Ray now, with shard 1's engine raising on p8: shard 0 finishes, shard 1 stops at chunk 4.
    with pytest.raises(EngineError) as err:
        on_ray(config(out), functools.partial(build, str(log), "p8", "raise"))
    node = cluster.util.get_node_ip_address()
    assert re.fullmatch(
        rf"Ray shard 1/2 failed on {re.escape(node)} \(node [0-9a-f]{{8}}\): RuntimeError: the engine broke \(traceback in the Ray worker log on that node\); "
        "the finished chunks are saved, rerun the same command to resume",
        str(err.value),
    )
    stored = {(r["problem_id"], r["seed"]) for r in ResultsFile(out / "results.jsonl").load()}
    assert stored == {(p, s) for p in SHARD0 for s in (0, 1)} | {("p6", 0), ("p7", 0)}  # seed 0's chunk 3 finished before
    assert {p for _, p in solved(log)} == SHARD0 | {"p6", "p7", "p8"}
    assert [p for _, p in solved(log)].count("p0") == calls_per_problem(full)  # seed 1 only: seed 0's chunks were skipped
    # The rerun solves only what is missing and ends with the unsharded run's rows.
    log.unlink()
    on_ray(config(out), functools.partial(build, str(log)))
    assert sorted({p for _, p in solved(log)}, key=lambda p: int(p[1:])) == ["p6", "p7", "p8", "p9", "p10"]
    assert len(ResultsFile(out / "results.jsonl").load()) == 11 * 4 * 2
    assert canonical(out) == canonical(full)
    # A finished run resumes without starting any shard.
    log.unlink()
    on_ray(config(out), functools.partial(build, str(log)))
    assert not log.exists()


def test_a_worker_killed_mid_shard_is_retried_without_duplicates(cluster, full, tmp_path):
    log, marker = tmp_path / "solved.log", tmp_path / "crashed"
    on_ray(config(tmp_path / "ray"), functools.partial(build, str(log), "p4", str(marker)), max_retries=1)
    assert marker.exists()  # the worker did die on p4
    pids = [pid for pid, p in solved(log) if p == "p4"]
    # Seed 0 started in the process that died and ran again whole in its restart, which then did seed 1.
    assert len(set(pids)) == 2 and pids[0] != pids[-1] and pids.count(pids[-1]) == 2 * calls_per_problem(full)
    rows = ResultsFile(tmp_path / "ray" / "results.jsonl").load()
    keys = [(r["problem_id"], r["strategy"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == 11 * 4 * 2
    assert canonical(tmp_path / "ray") == canonical(full)


def test_a_shard_that_keeps_dying_is_one_line_naming_shard_node_and_cause(cluster, tmp_path):
    log = tmp_path / "solved.log"
    with pytest.raises(EngineError) as err:
        on_ray(config(tmp_path / "ray"), functools.partial(build, str(log), "p6"), max_retries=1)
    node = cluster.util.get_node_ip_address()
    assert re.fullmatch(
        rf"Ray shard 1/2 failed on {re.escape(node)}: its worker process died 2 time\(s\) \(killed, out of memory, or its node was lost; "
        r"last: Worker unexpectedly exits with a connection error code 2\.\); the finished chunks are saved, rerun the same command to resume",
        str(err.value),
    )
    assert len({pid for pid, p in solved(log) if p == "p6"}) == 2  # restarted once
    stored = {r["problem_id"] for r in ResultsFile(tmp_path / "ray" / "results.jsonl").load()}
    # Shard 0 finished, both seeds; of shard 1 nothing of p6's chunk. (Ray may rerun a dead actor's calls out of
    # order, so whether its later chunks got in before the second death varies.)
    assert SHARD0 <= stored and not stored & {"p6", "p7"}


def test_cli_eval_on_ray_equals_the_unsharded_cli_run(cluster, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {a} + 3?", "answer": str(a + 3)}) + "\n" for a in range(4)))
    """The real path: each shard builds the in-process engine from the flags (a tiny random model) on its node."""
    from _tiny import make_llama, make_tokenizer

    model = tmp_path / "model"
    tok = make_tokenizer()
    make_llama(tok, seed=0).save_pretrained(model)
    tok.save_pretrained(model)
    def flags(model, out):
        task = ["eval", "--task", "jsonl", "--data", str(data), "--batch-problems", "2", "--strategy", "majority,weighted", "--n", "1,2"]
        return [*task, "--model", str(model), "--device", "cpu", "--max-tokens", "8", "--scorer", "confidence:mean", "--no-progress", "--out", str(out)]

    # Bitwise-equal rows need equal numerics: a Ray actor with 1 CPU runs torch on 1 thread, and CPU GEMMs sum
    # in a thread-count-dependent order (with 2 threads here a sampled token flipped in CI).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(flags(model, tmp_path / "local")) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*flags(model, tmp_path / "ray"), "--ray", "--ray-shards", "2"]) == 0
    key = lambda r: (r["problem_id"], r["strategy"])
    local = sorted((without_measurements(r) for r in ResultsFile(tmp_path / "local" / "results.jsonl").load()), key=key)
    rayed = sorted((without_measurements(r) for r in ResultsFile(tmp_path / "ray" / "results.jsonl").load()), key=key)
    assert len(rayed) == 4 * 2 and rayed == local
    assert json.loads((tmp_path / "ray" / "run.json").read_text())["identity"]["backend"] == {"engine": "transformers", "device": "cpu", "dtype": "float32"}
    # A model a shard cannot load: one line naming the shard and its node, no traceback.
    capsys.readouterr()
    assert main([*flags(tmp_path / "nowhere", tmp_path / "bad"), "--ray", "--ray-shards", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: Ray shard 0/1 failed on {cluster.util.get_node_ip_address()} (node ") and err.count("\n") == 1
    assert f"could not load model '{tmp_path / 'nowhere'}'" in err and "Traceback" not in err


def spr_build(_log: str):
    import random

    def generate(request, params, index):
        q = request.partial[1] if request.partial else random.Random(params.seed).randrange(10)
        return (f"<{q}>" + "x" * 27 + ".")[len(request.partial) :]

    score = ScriptedScorer(lambda question, steps: [int(steps[-1][1]) / 10 if len(steps[-1]) > 1 else 0.0])
    return ScriptedEngine(generate), score, None


def test_bench_spr_on_ray_equals_the_local_bench(cluster, tmp_path):
    problems = [Problem(id=f"p{i}", question=f"question {i}", answer=None) for i in range(4)]
    base = dict(task="fake", limit=None, bon_n=[2, 4], n=8, alphas=[0.5], decision_tokens=[5], chunk=2, max_tokens=64)
    engine, score, _ = spr_build("")
    local = run_spr_bench(SprBenchConfig(**base, out=str(tmp_path / "local")), engine=engine, scorer=score, problems=problems, progress=False, log=quiet)
    rayed = run_spr_bench(SprBenchConfig(**base, out=str(tmp_path / "ray")), problems=problems, progress=False, log=quiet, ray=RayRun(build=functools.partial(spr_build, ""), num_shards=2))
    assert [r.method for r in rayed.rows] == ["bon", "bon", "spr-0.5-n8-d5"] and _no_wall(rayed) == _no_wall(local)

    def rows(d):
        return sorted(json.dumps({**r, "usage": {k: v for k, v in r["usage"].items() if k != "wall_time"}}, sort_keys=True) for r in ResultsFile(d / "results.jsonl").load())

    assert rows(tmp_path / "ray") == rows(tmp_path / "local") and len(rows(tmp_path / "ray")) == 2 * 4
    assert json.loads((tmp_path / "ray" / "run.json").read_text())["identity"]["scorer_class"] == "ScriptedScorer"


def _no_wall(report) -> list[tuple]:
    return [(r.method, r.n, r.score, r.reward, r.mean_compute_tokens) for r in report.rows]


@pytest.mark.parametrize(
    "kw, match",
    [
        pytest.param({"num_shards": 7}, r"--ray-shards 7: the run has 6 chunks and a shard takes whole chunks; use at most 6", id="more-shards-than-chunks"),
        pytest.param({"num_gpus_per_shard": 1.0}, r"a Ray shard asks for 1 CPUs and 1 GPUs, but the cluster has 2 CPUs and 0 GPUs", id="no-gpus"),
    ],
)
def test_impossible_shards_are_refused(cluster, tmp_path, kw, match):
    with pytest.raises(ValidationError, match=match):
        on_ray(config(tmp_path / "ray"), functools.partial(build, str(tmp_path / "log")), **kw)
    assert not (tmp_path / "ray" / "results.jsonl").exists()


@pytest.mark.parametrize(
    "kw, match",
    [
        pytest.param({"num_shards": -1}, r"`num_shards` must be an integer >= 0", id="negative-shards"),
        pytest.param({"num_gpus_per_shard": float("nan")}, r"`num_gpus_per_shard` must be a number >= 0", id="nan-gpus"),
        pytest.param({"max_retries": -2}, r"`max_retries` must be an integer >= 0", id="negative-retries"),
        pytest.param({"build": None}, r"give `build`", id="no-build"),
    ],
)
def test_bad_ray_options(kw, match):
    with pytest.raises(ValidationError, match=match):
        RayRun(**{"build": build, **kw})


@pytest.mark.parametrize(
    "extra, message",
    [
        pytest.param(["--ray-shards", "2"], "error: --ray-shards applies to Ray runs only; add --ray [ADDRESS].\n", id="flag-without-ray"),
        pytest.param(["--ray", "--shard", "0/2"], "error: --ray splits the run into shards itself; drop --shard (or --ray to run one shard here).\n", id="ray-and-shard"),
    ],
)
def test_ray_flags_misused_are_one_line(tmp_path, capsys, extra, message):
    assert main(["eval", "--limit", "2", "--out", str(tmp_path / "r"), *extra]) == 2
    assert capsys.readouterr().err == message


def test_without_ray_installed_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["eval", "--limit", "2", "--out", str(tmp_path / "r"), "--ray"]) == 1
    assert capsys.readouterr().err == "error: --ray needs `ray`, which is not installed; run `pip install 'testtime[ray]'`\n"
    assert not (tmp_path / "r").exists()


def test_a_failed_shards_skipped_piece_arriving_before_its_failure_does_not_mask_the_error(tmp_path):
    """Ray returns whichever piece is ready first: shard 1's next piece (skipped, no backend) can come back
    before the piece that failed. The error names the failure, not a backend mismatch (a flaky CI failure)."""
    from types import SimpleNamespace

    from testtime.eval._ray import _gather, _Reply

    replies = {
        "ok": _Reply(node="n0", rows=[], backend={"engine": "scripted"}),
        "skipped": _Reply(node="n1", is_skipped=True),
        "failed": _Reply(node="n1", error="RuntimeError: the engine broke"),
    }
    fake_ray = SimpleNamespace(
        wait=lambda refs, num_returns: (refs[:1], refs[1:]),  # in the order given: the skipped piece before the failure
        get=lambda ref: replies[ref],
        kill=lambda actor: None,
        exceptions=SimpleNamespace(RayError=RuntimeError),
    )
    pending = {"ok": (0, 0, []), "skipped": (2, 1, []), "failed": (1, 1, [])}
    with pytest.raises(EngineError, match=r"^Ray shard 1/2 failed on n1: RuntimeError: the engine broke; the finished"):
        _gather(fake_ray, pending, {}, 2, 0, results=ResultsFile(tmp_path / "r.jsonl"), done=set(), key=lambda r: r["id"], on_backend=lambda b: None, on_append=None)
