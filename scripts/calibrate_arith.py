"""Measure the embedded model's greedy accuracy per level on the `arith` task, to calibrate its levels.

The task is meant to be hard enough that test-time compute has room to help: greedy accuracy of
SmolLM2-135M-Instruct should fall from >= 40% at level 1 to <= 10% at level 5. Change `ARITH_LEVELS` or the
prompt in `testtime.tasks`, rerun on `dev`, and when it holds run once on `test` and record the table.

    python scripts/calibrate_arith.py --split dev --per-level 40
    python scripts/calibrate_arith.py --split test --per-level 50

This uses plain HF `model.generate` (greedy, left-padded batches of 32, chat template, 4 same-level
few-shot examples) so the numbers do not depend on our engine; answers are graded with
`testtime.grading.extract_answer(text, last_number=True)` as integers. A dev run takes 10-17 minutes on the
shared 2-core CPU.

Results with the levels in `testtime.tasks.arith.ARITH_LEVELS` (SmolLM2-135M-Instruct fp32, greedy,
max_new_tokens=256; "boxed" = completions containing a \\boxed{} answer; tokens = generated
tokens per completion, EOS included):

| split | level | n | accuracy | boxed | mean tokens |
|---|---|---|---|---|---|
| dev | 1 | 40 | 65% | 85% | 44 |
| dev | 2 | 40 | 38% | 95% | 41 |
| dev | 3 | 40 | 30% | 78% | 70 |
| dev | 4 | 40 | 5% | 98% | 63 |
| dev | 5 | 40 | 2% | 60% | 139 |
| test | 1 | 50 | 68% | 100% | 42 |
| test | 2 | 50 | 28% | 96% | 44 |
| test | 3 | 50 | 28% | 78% | 77 |
| test | 4 | 50 | 10% | 92% | 71 |
| test | 5 | 50 | 2% | 46% | 153 |

(dev levels 1-2 and 3-5 come from two runs with the same settings; the test row is one run of
`--split test --per-level 50`, 952 s.)
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from testtime.tasks import load_task

try:
    from testtime.grading import extract_answer
except ImportError:  # grading/ is optional here; this fallback is the same rule for integer answers
    extract_answer = None


def extract_int(text: str) -> int | None:
    """The integer a completion answers: its last \\boxed{}, else its last number (as the task's fallback)."""
    if extract_answer is not None:
        answer = extract_answer(text, last_number=True)
    else:
        boxed = re.findall(r"\\boxed\{([^{}]*)\}", text)
        numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
        answer = boxed[-1] if boxed else (numbers[-1] if numbers else None)
    if answer is None:
        return None
    answer = answer.replace(",", "").replace("$", "").strip()
    try:
        value = float(answer)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/smol", help="HF model path (default: /tmp/smol)")
    parser.add_argument("--split", default="dev", help="arith split (default: dev)")
    parser.add_argument("--per-level", type=int, default=40, help="problems per level (default: 40)")
    parser.add_argument("--levels", default="1,2,3,4,5", help="comma-separated levels (default: 1,2,3,4,5)")
    parser.add_argument("--seed", type=int, default=0, help="arith generator seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="generation batch size (default: 32)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="per completion (default: 256)")
    parser.add_argument(
        "--num-shots", type=int, default=None, help="few-shot examples (default: the task's, 4)"
    )
    parser.add_argument("--out", default=None, help="write completions as JSONL here (default: none)")
    args = parser.parse_args()

    # SmolLM2's activations hit float32 denormals (|x| < 1.2e-38) while decoding; flushing them to zero made
    # a batch-32 decode step ~10x faster on our 2-core CPU (2.1 s -> 0.2 s, measured once, machine shared).
    torch.set_flush_denormal(True)
    levels = [int(x) for x in args.levels.split(",")]
    fields = {} if args.num_shots is None else {"num_shots": args.num_shots}
    problems = load_task(
        "arith", split=args.split, limit=args.per_level * len(levels), levels=levels, seed=args.seed, **fields
    )
    problems.sort(key=lambda p: p.level)  # similar lengths per batch: less padding, earlier stops
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()

    rows = []
    start = time.perf_counter()
    for b in range(0, len(problems), args.batch_size):
        batch = problems[b : b + args.batch_size]
        texts = [
            tokenizer.apply_chat_template(p.chat(), add_generation_prompt=True, tokenize=False) for p in batch
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        for p, ids in zip(batch, out[:, enc.input_ids.shape[1] :].tolist(), strict=True):
            # Count up to and including the first EOS; the rest is padding after the row finished.
            num_tokens = ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
            text = tokenizer.decode(ids[:num_tokens], skip_special_tokens=True)
            pred = extract_int(text)
            rows.append(
                {
                    "id": p.id,
                    "level": p.level,
                    "answer": p.answer,
                    "pred": pred,
                    "correct": pred == int(p.answer),
                    "boxed": "\\boxed{" in text,
                    "num_tokens": num_tokens,
                    "text": text,
                }
            )
        done = len(rows)
        print(f"  {done}/{len(problems)} done, {time.perf_counter() - start:.0f}s", flush=True)

    if args.out:
        with open(args.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    by_level = defaultdict(list)
    for r in rows:
        by_level[r["level"]].append(r)
    elapsed = time.perf_counter() - start
    total_tokens = sum(r["num_tokens"] for r in rows)
    print(
        f"\narith split={args.split} seed={args.seed} model={args.model} greedy, max_new_tokens={args.max_new_tokens}, "
        f"num_shots={args.num_shots or 'default'}, {elapsed:.0f}s, {total_tokens / elapsed:.0f} tok/s"
    )
    print("| level | n | accuracy | boxed | mean tokens |")
    print("|---|---|---|---|---|")
    for level in sorted(by_level):
        rs = by_level[level]
        acc = sum(r["correct"] for r in rs) / len(rs)
        boxed = sum(r["boxed"] for r in rs) / len(rs)
        tokens = sum(r["num_tokens"] for r in rs) / len(rs)
        print(f"| {level} | {len(rs)} | {acc:.0%} | {boxed:.0%} | {tokens:.0f} |")


if __name__ == "__main__":
    main()
