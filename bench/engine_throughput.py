"""Engine throughput on the embedded model against `model.generate`, measured in the same run.

Setup (defaults): 32 distinct arith dev prompts (the task's chat prompt, system + question, ~120 tokens; `--num-shots 4`
gives the eval prompt with 4 worked examples, ~600 tokens), left padded, 128 new tokens per row forced (EOS
ignored), sampling at T=0.8, fp32 on CPU.

Prints tokens/s per run and the mean for:
- `model.generate` (transformers, same prompts, same sampling, min_new_tokens = max_new_tokens),
- `TransformersEngine.generate` (our decode loop),
- the forward-pass bound: the native model's prefill + decode forward passes alone (no sampling, no stop
  checks, no Python bookkeeping), i.e. the fastest any loop over this forward could go,
and the ratio engine / generate (the target is >= 1.4) and engine / bound.

    python bench/engine_throughput.py [--batch 32] [--new-tokens 128] [--runs 3] [--num-shots 0]
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="default")
    ap.add_argument("--num-shots", type=int, default=0, help="few-shot examples in each arith prompt (the eval uses 4)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="default: the engine's (fp32 on CPU)")
    ap.add_argument("--random-init", action="store_true",
                    help="random weights with --model's config and tokenizer (for machines without the weights; "
                    "throughput does not depend on weight values since EOS is ignored)")
    args = ap.parse_args()

    from testtime.engines import Request, SamplingParams, TransformersEngine
    from testtime.engines._sessions import NativeSession
    from testtime.tasks import load_task

    model_arg = _random_copy(args.model) if args.random_init else args.model
    engine = TransformersEngine(model_arg, max_batch_size=args.batch,
                                device=args.device, dtype=getattr(torch, args.dtype) if args.dtype else None)
    tok, model = engine.tokenizer, engine.model
    problems = load_task("arith", split="dev", limit=args.batch, num_shots=args.num_shots)
    requests = [Request(messages=p.chat()) for p in problems]
    prompts = [engine.encode(r) for r in requests]
    B, N = len(prompts), args.new_tokens
    lengths = [len(p) for p in prompts]
    print(f"model {engine.model_name} ({type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params), "
          f"dtype {model.dtype}, device {engine.device}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print(f"batch {B}, prompt tokens {min(lengths)}-{max(lengths)} (mean {sum(lengths) / B:.0f}), new tokens {N}, temperature {args.temperature}, runs {args.runs} (+1 warm-up)")

    # transformers generate: left-padded batch of the same token ids.
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    width = max(lengths)
    ids = torch.full((B, width), pad, dtype=torch.long)
    mask = torch.zeros(B, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(engine.device), mask.to(engine.device)

    def hf_generate() -> int:
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=args.temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=N, min_new_tokens=N, pad_token_id=pad)
        return (out.shape[1] - width) * B

    params = SamplingParams(temperature=args.temperature, max_tokens=N, ignore_eos=True, seed=0)

    def engine_generate() -> int:
        outs = engine.generate(requests, params)
        return sum(c.num_tokens for o in outs for c in o.completions)

    def forward_bound() -> int:
        """Prefill + N decode steps of the native forward, nothing else."""
        with torch.inference_mode():
            session = NativeSession(engine.runner)
            session.add_rows([p[:-1] for p in prompts])
            session.reserve(N + 1)
            dev = engine.device
            tokens = torch.tensor([p[-1] for p in prompts], device=dev)
            pos = torch.tensor([len(p) - 1 for p in prompts], device=dev)
            active = torch.ones(B, dtype=torch.bool, device=dev)
            for _ in range(N):
                session.decode(tokens, pos, active)
                pos += 1
        return B * N

    def sync() -> None:
        if engine.device.type == "cuda":
            torch.cuda.synchronize()

    results = {}
    for name, fn in [("model.generate", hf_generate), ("engine", engine_generate), ("forward bound", forward_bound)]:
        fn()  # warm-up
        rates = []
        for _ in range(args.runs):
            sync()
            t0 = time.perf_counter()
            tokens = fn()
            sync()
            rates.append(tokens / (time.perf_counter() - t0))
        results[name] = sum(rates) / len(rates)
        print(f"{name:<15} " + "  ".join(f"{r:7.1f}" for r in rates) + f"   mean {results[name]:7.1f} tok/s")
    ratio = results["engine"] / results["model.generate"]
    frac = results["engine"] / results["forward bound"]
    print(f"engine / model.generate = {ratio:.2f}x (target >= 1.4x); engine / forward bound = {frac:.0%}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _random_copy(model_dir: str) -> str:
    """A directory with `model_dir`'s config and tokenizer and seeded random weights."""
    import tempfile

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tempfile.mkdtemp(prefix="testtime-random-")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


if __name__ == "__main__":
    main()
