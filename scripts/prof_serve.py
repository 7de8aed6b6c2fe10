"""Where the time of one majority n=4 x 64-token request goes: prefill vs decode, batch scaling, thread."""
import threading, time
import torch
from dataclasses import replace
from testtime.engines import TransformersEngine, SamplingParams, Request
import testtime.engines._sessions as sessions
from testtime.tasks import load_task

eng = TransformersEngine("default")
probs = load_task("arith", split="test", limit=8)
reqs = [Request(messages=p.chat()) for p in probs]
samp = SamplingParams(max_tokens=64, temperature=0.8, top_p=1.0, ignore_eos=True, n=4)

def phase(k, tag, steps=16):
    with torch.inference_mode():
        b = eng.start()
        p0 = eng.usage.num_prefill_tokens
        t0 = time.perf_counter()
        b.add(reqs[:k], [replace(samp, seed=i) for i in range(k)])
        t1 = time.perf_counter()
        b.advance(1)
        t2 = time.perf_counter()
        b.advance(steps)
        t3 = time.perf_counter()
    n = eng.usage.num_prefill_tokens - p0
    print(f"{tag} k={k} rows={4*k}: prefill {t1-t0:.2f}s for {n} tok ({n/(t1-t0):.0f} tok/s), decode {1000*(t3-t2)/steps:.0f} ms/step", flush=True)

print(f"torch threads {torch.get_num_threads()}", flush=True)
phase(1, "warm", 4)
for k in (1, 2, 8):
    phase(k, "main")
t = threading.Thread(target=lambda: [phase(k, "thread") for k in (1, 2)]); t.start(); t.join()
sessions.PREFILL_TOKENS_PER_FORWARD = 600  # one prompt per prefill forward
phase(8, "main, one prompt per prefill forward")
