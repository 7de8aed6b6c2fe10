"""Load on `testtime serve` over loopback: N concurrent clients against the embedded model.

Setup (defaults): `testtime serve --model default` in a subprocess (its own process, so the clients never take
its GIL), strategy majority with budget 4 per request, exactly 64 new tokens per candidate (`ignore_eos`, so
every request costs the same and timings compare like for like), temperature 0.8, fp32 on CPU; the prompts are the arith task's real chat prompts (system + 2 few-shot turns + question), each request
with its own fixed seed. Every number comes from the server's answers (`usage.completion_tokens`).

Every phase runs on a fresh server (after one warm-up request on an unrelated prompt, excluded): the server's
prefix cache (`--prefix-cache-tokens`, on by default) starts empty in each, so no phase is served the prompts
an earlier one sent. Within a phase, requests compared with each other are prompts the server has not seen
(problem k + 10 has problem k's level and few-shot prefix, another question). `/health` reports the prompt
tokens computed and read from the cache; each load phase prints their share.

Phases:
1. one request alone, for P request pairs (each request of a pair alone, one after the other);
2. two requests of the same levels as each pair sent at once: their wall time against one alone (batching
   should keep it well under 2x) and against the two run back to back;
3. load, for each N in --clients: N clients in a closed loop sharing one queue of the same max(--clients) x R
   requests (so every N does the same work): throughput (requests/s, generated tokens/s), latency
   p50/p99, errors (any non-200), and the server's admission rounds (requests per round);
4. (--same-seed) 4 requests with one seed (`seed: 1234`, as evaluation harnesses send) at once against one alone
   (one request per level first warms the few-shot prefixes; every measured prompt is new);
5. (--head-of-line) a greedy request alone, then the same greedy request sent while a beam-16 request runs
   (needs `--scorer default`): its latency against its latency alone;
6. (--mixed N) N clients in a closed loop whose requests cycle through greedy, majority, beam and dvts;
7. (--stream) a greedy request streamed: time to its first content chunk against the whole answer's latency;
8. (--stream-under-load K) a greedy request streamed alone, then again with K majority requests (the longest
   prompts) sent one per second from 1 s into it: the gaps between its content chunks, alone and under load.
   The server prefills a new prompt in slices of --prefill-chunk tokens between decode steps (chunked prefill);
   run once with the default and once with --prefill-chunk 0 (whole prompts) to compare.

    python bench/serve_load.py [--clients 1,4,8] [--requests 3] [--pairs 3] [--budget 4] [--max-tokens 64] [--allow-eos]
        [--scorer default --same-seed --head-of-line --mixed 8] [--stream] [--stream-under-load 4 --prefill-chunk 0]
        [--prefix-cache-tokens 0]

--pairs 0 and --clients 0 skip those phases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "testtime", "serve", "--model", args.model, "--port", str(port),
        "--strategy", "majority", "--budget", str(args.budget), "--max-tokens", str(args.max_tokens), "--scorer", args.scorer,
        "--temperature", str(args.temperature), "--batch-window-ms", str(args.batch_window_ms), "--log-level", "warning",
    ]  # fmt: skip
    if args.device:
        cmd += ["--device", args.device]
    if args.prefill_chunk is not None:
        cmd += ["--prefill-chunk", str(args.prefill_chunk)]
    if args.prefix_cache_tokens is not None:
        cmd += ["--prefix-cache-tokens", str(args.prefix_cache_tokens)]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not come up in 300 s")


class Client:
    def __init__(self, url: str, problems, args) -> None:
        self.url, self.problems, self.args = url, problems, args
        self.http = httpx.AsyncClient(timeout=600)

    async def ask(self, k: int, **extra) -> tuple[float, int, int]:
        """(seconds, HTTP status, generated tokens) for request k (problem k mod P, seed k; `extra` overrides)."""
        p = self.problems[k % len(self.problems)]
        body = {"model": self.args.model, "messages": p.chat(), "budget": self.args.budget, "max_tokens": self.args.max_tokens, "seed": k, "ignore_eos": not self.args.allow_eos, **extra}
        t0 = time.perf_counter()
        r = await self.http.post(self.url + "/v1/chat/completions", json=body)
        dt = time.perf_counter() - t0
        return dt, r.status_code, r.json()["usage"]["completion_tokens"] if r.status_code == 200 else 0


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples, p99 is the maximum)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


class Server:
    """`testtime serve` in a subprocess, started afresh for every phase (`fresh()`): its prefix cache starts
    empty, so no phase finds the prompts an earlier phase sent, and each phase starts from the same state."""

    def __init__(self, args) -> None:
        self.args, self.proc, self.port = args, None, free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def fresh(self, problems) -> Client:
        self.stop()
        self.proc = start_server(self.args, self.port)
        c = Client(self.url, problems, self.args)
        # Warm-up (first batch shapes, allocator) on a prompt no phase sends, so it caches none of their prefixes.
        r = await c.http.post(self.url + "/v1/chat/completions", json={"model": self.args.model, "messages": [{"role": "user", "content": "Say hello."}], "budget": self.args.budget, "max_tokens": self.args.max_tokens})
        assert r.status_code == 200
        return c

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None


def cache_share(url: str, h0: dict) -> str:
    """The share of prompt tokens the server read from its prefix cache since `h0` (a /health answer)."""
    h1 = httpx.get(url + "/health").json()
    computed = h1["num_prefill_tokens"] - h0["num_prefill_tokens"]
    cached = h1["num_cached_prompt_tokens"] - h0["num_cached_prompt_tokens"]
    return f"prompt tokens: {computed} computed, {cached} read from the prefix cache ({cached / max(computed + cached, 1):.0%})"


async def run(args, server: Server, problems) -> None:
    one = None
    if args.pairs:
        c = await server.fresh(problems)
        one = await pairs(c, args)
        await c.http.aclose()
    rows = []
    for clients in args.clients:
        if clients:
            c = await server.fresh(problems)
            rows.append(await load(c, args, server.url, clients, one))
            await c.http.aclose()
    if args.mixed:
        c = await server.fresh(problems)
        rows.append(await load(c, args, server.url, args.mixed, one, mixed=True))
        await c.http.aclose()
    print("\n| clients | strategies | requests | wall s | req/s | x one client | gen tok/s | p50 s | p99 s | errors | req per admission |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = rows[0]["rps"] if rows and rows[0]["clients"] == 1 else None
    for r in rows:
        r["x"] = f"{r['rps'] / base:.2f}x" if base else "-"
        print("| {clients} | {kind} | {total} | {wall:.1f} | {rps:.3f} | {x} | {tps:.0f} | {p50:.2f} | {p99:.2f} | {errors} | {per_batch:.1f} |".format(**r))
    for flag, phase in ((args.same_seed, same_seed), (args.head_of_line, head_of_line), (args.stream, stream), (args.stream_under_load, stream_under_load)):
        if flag:
            c = await server.fresh(problems)
            await phase(c, args)
            await c.http.aclose()


async def pairs(c: Client, args) -> float | None:
    """Each request of a pair alone, one after the other, then two other requests of the same levels at once (so
    the pair sent together is not served from the prefix cache the pair sent alone filled)."""
    alone, together, back_to_back = [], [], []
    for i in range(args.pairs):
        a, b = 2 * i, 2 * i + 1
        ta, sa, _ = await c.ask(a)
        tb, sb, _ = await c.ask(b)
        t0 = time.perf_counter()
        (_, s1, _), (_, s2, _) = await asyncio.gather(c.ask(a + SAME_LEVEL), c.ask(b + SAME_LEVEL))
        t2 = time.perf_counter() - t0
        assert {sa, sb, s1, s2} == {200}
        alone += [ta, tb]
        together.append(t2)
        back_to_back.append(ta + tb)
        print(f"pair {i}: alone {ta:.2f} s and {tb:.2f} s; two of the same levels at once {t2:.2f} s ({t2 / ((ta + tb) / 2):.2f}x one alone)")
    one = statistics.mean(alone)
    print(f"\n1 request alone: mean {one:.2f} s over {len(alone)}")
    print(f"2 concurrent requests: mean {statistics.mean(together):.2f} s = {statistics.mean(together) / one:.2f}x one request "
          f"({statistics.mean(together) / statistics.mean(back_to_back):.2f}x the two back to back)")
    return one


SAME_LEVEL = 10
"""Problem k + 10 has problem k's level (the arith test problems cycle through the 5 levels), so its prompt
shares k's few-shot prefix but not its question."""


async def stream(c: Client, args) -> None:
    """A greedy request (exactly max_tokens, ignore_eos) streamed: time to its first content chunk and its
    chunks, against the same request not streamed."""
    body = dict(strategy="greedy", budget=1, seed=5)
    whole = await latencies(c, 11, **body)
    p = c.problems[11 % len(c.problems)]
    payload = {"model": c.args.model, "messages": p.chat(), "max_tokens": args.max_tokens, "ignore_eos": True, "stream": True, **body}
    firsts, totals, chunks = [], [], []
    for _ in range(3):
        t0, first, n = time.perf_counter(), None, 0
        async with c.http.stream("POST", c.url + "/v1/chat/completions", json=payload) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                    n += 1
                    first = first if first is not None else time.perf_counter() - t0
        totals.append(time.perf_counter() - t0)
        firsts.append(first)
        chunks.append(n)
    print(f"\nstream: greedy, {args.max_tokens} tokens: not streamed {statistics.mean(whole):.2f} s (mean of 3); streamed: first content "
          f"after {statistics.mean(firsts):.2f} s, all {statistics.mean(totals):.2f} s, {statistics.mean(chunks):.0f} content chunks (means of 3)")


async def streamed_gaps(c: Client, args, k: int) -> tuple[float, list[float]]:
    """Stream request k greedily: (seconds to the last chunk, gaps between content chunks, the first one's wait
    included)."""
    p = c.problems[k % len(c.problems)]
    payload = {"model": c.args.model, "messages": p.chat(), "max_tokens": args.max_tokens, "ignore_eos": True, "stream": True, "strategy": "greedy", "budget": 1}
    t0 = time.perf_counter()
    arrivals = [t0]
    async with c.http.stream("POST", c.url + "/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                arrivals.append(time.perf_counter())
    return arrivals[-1] - t0, [b - a for a, b in zip(arrivals, arrivals[1:])]


async def stream_under_load(c: Client, args) -> None:
    """A streamed greedy reply alone, then with K majority requests (the longest prompts) arriving one per second."""
    k = 11
    longest = sorted(range(len(c.problems)), key=lambda i: -sum(len(m["content"]) for m in c.problems[i].chat()))
    total0, gaps0 = await streamed_gaps(c, args, k)

    async def arrivals() -> list[int]:
        await asyncio.sleep(1.0)
        sent = []
        for j in longest[: args.stream_under_load]:
            sent.append(asyncio.ensure_future(c.ask(j, seed=j)))
            await asyncio.sleep(1.0)
        return [s for _, s, _ in await asyncio.gather(*sent)]

    (total1, gaps1), statuses = await asyncio.gather(streamed_gaps(c, args, k), arrivals())
    assert all(s == 200 for s in statuses)
    chunk = "default" if args.prefill_chunk is None else args.prefill_chunk
    for label, total, gaps in (("alone", total0, gaps0), (f"with {args.stream_under_load} requests arriving", total1, gaps1)):
        rest = gaps[1:]
        print(f"\nstream under load (--prefill-chunk {chunk}), {label}: first content {gaps[0]:.2f} s, whole reply {total:.2f} s, "
              f"{len(gaps)} chunks; gaps between chunks: median {statistics.median(rest):.2f} s, p90 {percentile(rest, 90):.2f} s, max {max(rest):.2f} s")


async def latencies(c: Client, k: int, times: int = 3, **extra) -> list[float]:
    """Seconds of request k (with `extra`) sent `times` times, one after another."""
    out = []
    for _ in range(times):
        dt, status, _ = await c.ask(k, **extra)
        assert status == 200
        out.append(dt)
    return out


async def same_seed(c: Client, args) -> None:
    """4 requests (4 prompts, levels 1-4) that all carry seed 1234, at once, against one of them alone and against
    4 requests of the same levels with 4 different seeds at once (same-seed requests should batch like any
    others). Every measured request is a prompt the server has not seen, after one request per level warmed the
    levels' few-shot prefixes: what a running server sees from a harness that sends one task's problems."""
    for k in range(5, 9):  # problems 5-8: levels 1-4, not measured
        assert (await c.ask(k))[1] == 200
    alone = []
    for k in range(4):
        dt, status, _ = await c.ask(k, seed=1234)
        assert status == 200
        alone.append(dt)
    one = statistics.mean(alone)
    walls = {}
    for label, first, seeds in (("all seed 1234", 2 * SAME_LEVEL, [1234] * 4), ("seeds 1-4", 3 * SAME_LEVEL, [1, 2, 3, 4])):
        h0 = httpx.get(c.url + "/health").json()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(c.ask(first + k, seed=s) for k, s in enumerate(seeds)))
        walls[label] = time.perf_counter() - t0
        assert all(s == 200 for _, s, _ in results)
        print(f"same seed, {label}: {cache_share(c.url, h0)}")
    print(f"\nsame seed: one request alone {one:.2f} s (mean of 4); 4 at once, all seed 1234: {walls['all seed 1234']:.2f} s = "
          f"{walls['all seed 1234'] / one:.2f}x one; 4 others with 4 different seeds: {walls['seeds 1-4']:.2f} s = {walls['seeds 1-4'] / one:.2f}x one")


async def head_of_line(c: Client, args) -> None:
    """A greedy request alone, then the same request sent while a beam-16 search runs."""
    greedy = dict(strategy="greedy", budget=1, seed=5)
    assert (await c.ask(2))[1] == 200  # warms level 3's prefix; every measured greedy request is a new level-3 prompt
    alone = [(await c.ask(k, **greedy))[0] for k in (7, 7 + SAME_LEVEL, 7 + 2 * SAME_LEVEL)]
    beam = asyncio.ensure_future(c.ask(9, strategy="beam", budget=16, max_tokens=args.beam_max_tokens))
    await asyncio.sleep(args.beam_head_start)
    dt, status, _ = await c.ask(7 + 3 * SAME_LEVEL, **greedy)
    assert status == 200
    beam_dt, beam_status, _ = await beam
    one = statistics.mean(alone)
    print(f"\nhead-of-line: greedy alone {one:.2f} s (mean of 3: {', '.join(f'{a:.2f}' for a in alone)}); sent {args.beam_head_start:.0f} s into a "
          f"beam-16 request: {dt:.2f} s = {dt / one:.2f}x alone (the beam request took {beam_dt:.1f} s, status {beam_status})")


MIXED = [dict(strategy="greedy", budget=1), dict(strategy="majority"), dict(strategy="beam"), dict(strategy="dvts")]


async def load(c: Client, args, url: str, clients: int, one: float, mixed: bool = False) -> dict:
    """N clients in a closed loop over one queue of max(--clients) x R requests (with `mixed`, request i uses
    strategy i mod 4 of MIXED at the load's budget); returns the row of the results table."""
    health0 = httpx.get(url + "/health").json()
    lat: list[float] = []
    statuses: list[int] = []
    tokens = 0

    # Every load phase sends the same requests (max(--clients) x --requests of them, the same prompts and seeds),
    # pulled from one queue by however many clients: a phase with fewer clients does the same work in fewer
    # streams, so requests/s compare like for like (prompt lengths vary 416-1037 tokens over the problems).
    todo = list(range(max(args.clients) * args.requests))

    async def worker() -> None:
        nonlocal tokens
        while todo:
            i = todo.pop(0)
            dt, status, n = await c.ask(1000 + i, **(MIXED[i % len(MIXED)] if mixed else {}))
            lat.append(dt)
            statuses.append(status)
            tokens += n

    total = len(todo)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    health1 = httpx.get(url + "/health").json()
    batches = health1["num_batches"] - health0["num_batches"]
    errors = sum(s != 200 for s in statuses)
    kind = "greedy/majority/beam/dvts" if mixed else "majority"
    print(f"\nload: {clients} clients ({kind}), {total} requests from one queue, in {wall:.1f} s")
    vs_one = f" ({(total / wall) * one:.2f}x one request at a time)" if one else ""
    print(f"throughput: {total / wall:.3f} requests/s{vs_one}, {tokens / wall:.0f} generated tokens/s")
    print(f"latency: p50 {percentile(lat, 50):.2f} s, p99 {percentile(lat, 99):.2f} s, max {max(lat):.2f} s")
    print(f"errors: {errors} of {total}; server admission rounds: {batches} (mean {total / max(batches, 1):.1f} requests per round)")
    print(cache_share(url, health0), flush=True)
    return dict(kind=kind, clients=clients, total=total, wall=wall, rps=total / wall, tps=tokens / wall, p50=percentile(lat, 50), p99=percentile(lat, 99), errors=errors, per_batch=total / max(batches, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 8], help="concurrent clients of each load phase, comma-separated (default: 1,4,8)")
    ap.add_argument("--requests", type=int, default=3, help="requests per client of the largest --clients; every load phase sends that many in all")
    ap.add_argument("--pairs", type=int, default=3, help="request pairs for the 1-vs-2 comparison")
    ap.add_argument("--budget", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--allow-eos", action="store_true", help="let candidates end at EOS (default: exactly max_tokens each, so runs compare like for like)")
    ap.add_argument("--batch-window-ms", type=float, default=5.0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default=None, help="server device, cpu or cuda (default: the server's, cuda when available)")
    ap.add_argument("--scorer", default="none", help="the server's scorer: none, or default (the PRM head) for --head-of-line and --mixed")
    ap.add_argument("--same-seed", action="store_true", help="phase 4: 4 requests with one seed at once vs one alone")
    ap.add_argument("--head-of-line", action="store_true", help="phase 5: a greedy request during a beam-16 request vs alone")
    ap.add_argument("--beam-max-tokens", type=int, default=256, help="max_tokens of the beam-16 request in phase 5")
    ap.add_argument("--beam-head-start", type=float, default=3.0, help="seconds the beam request runs before the greedy one is sent")
    ap.add_argument("--mixed", type=int, default=0, help="phase 6: this many clients with mixed strategies (0: skip)")
    ap.add_argument("--stream-under-load", type=int, default=0, metavar="K", help="phase 8: a streamed greedy request alone, then while K majority requests arrive (0: skip)")
    ap.add_argument("--prefill-chunk", type=int, default=None, help="the server's --prefill-chunk (default: its own, 256 on CPU; 0: whole prompts)")
    ap.add_argument("--prefix-cache-tokens", type=int, default=None, help="the server's --prefix-cache-tokens (default: its own, 8192; 0: no prefix cache)")
    ap.add_argument("--stream", action="store_true", help="phase 7: a streamed greedy request: time to first content vs the whole answer")
    args = ap.parse_args()
    if (args.head_of_line or args.mixed) and args.scorer == "none":
        ap.error("--head-of-line and --mixed run beam search and dvts, which need --scorer default")

    from testtime.tasks import load_task

    problems = load_task("arith", split="test", limit=64)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    where = f"{torch.cuda.get_device_name()}, bf16" if device == "cuda" else f"fp32, CPU, {torch.get_num_threads()} torch threads"
    cache = "default" if args.prefix_cache_tokens is None else args.prefix_cache_tokens
    print(f"server: testtime serve --model {args.model} ({where}) on loopback, batch window {args.batch_window_ms} ms, --prefix-cache-tokens {cache}, a fresh server per phase")
    length = "ending at EOS or max_tokens" if args.allow_eos else "exactly max_tokens each (ignore_eos)"
    print(f"requests: majority, budget {args.budget}, max_tokens {args.max_tokens} ({length}), temperature {args.temperature}, arith test prompts, seed per request\n")
    server = Server(args)
    try:
        asyncio.run(run(args, server, problems))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
