"""GPU driver for issue 3: label + train the PRM head for the embedded model, then the PRM report.
Same library calls and settings as `testtime train-prm` / `testtime prm-report`, fp32 on CUDA."""
import json, os, sys, time, shutil
from pathlib import Path
import torch
OUT = Path(os.environ["OUT"]); WORK = Path("/root/prm3/work"); WORK.mkdir(parents=True, exist_ok=True)
from testtime.engines import TransformersEngine
from testtime.tasks import load_task
from testtime.prm import LabelParams, TrainParams, build_step_data, label_problems, train_head, FEATURE_LAYERS, ReportConfig, prm_report, format_report, plot_report
from testtime.scorers import PRMHeadScorer, load_scorer
from testtime.strategies import DEFAULT_SAMPLING
from dataclasses import replace
t0 = time.time()
def log(*a):
    print(f"[{time.time()-t0:7.1f}s]", *a, flush=True)
n_train = int(sys.argv[1]); n_test = int(sys.argv[2])
eng = TransformersEngine("default", device="cuda", dtype=torch.float32, seed=0)
log("engine", eng, torch.cuda.get_device_name())
probs = load_task("arith", split="train", limit=n_train)
params = LabelParams(num_samples=4, num_rollouts=4, temperature=0.8, max_tokens=384, seed=0)
rows = label_problems(eng, probs, WORK / "labels.jsonl", params, chunk_size=16, use_tqdm=False)
shutil.copy(WORK / "labels.jsonl", OUT / "labels.jsonl")
ns = sum(len(r["samples"]) for r in rows); nc = sum(s["correct"] for r in rows for s in r["samples"])
log(f"labelled {len(rows)} problems, {ns} samples, {nc} correct, {sum(len(r['prefix_values']) for r in rows)} prefixes", eng.usage)
data = build_step_data(eng, probs, rows, WORK / "features.pt", layers=FEATURE_LAYERS, use_tqdm=False)
log("features", {k: tuple(v.shape) for k, v in data.features.items() if k >= 0}, "outcome-labelled", data.num_outcome_labels)
settings = {"task": "arith", "split": "train", "data": None, "levels": None, "model": "default", "num_samples": 4, "num_rollouts": 4, "temperature": 0.8, "max_tokens": 384, "seed": 0}
head, tried = train_head(data, TrainParams(seed=0), num_problems=len(probs), engine=eng, meta={"generator": "default", "labels": settings, "command": f"testtime train-prm --limit {n_train}", "trained_on": "NVIDIA H100, fp32 (same code path as the CPU command)"})
for t in tried: log(t)
path = head.save(OUT / "smollm2-135m-instruct-arith.safetensors")
log("head", head.layers, head.meta["kind"], head.meta["validation"])
(OUT / "tried.json").write_text(json.dumps(tried, indent=2))
# report with the trained head
scorer = PRMHeadScorer(eng, head=path, batch_size=16)
test = load_task("arith", split="test", limit=n_test)
cfg = ReportConfig(max_n=16, reduction="last", sampling=replace(DEFAULT_SAMPLING, max_tokens=384), seed=0, chunk_size=20)
rep = prm_report(eng, scorer, test, WORK / "report", cfg, settings={"task": "arith", "split": "test", "limit": n_test, "model": "default", "scorer": "default"}, use_tqdm=False)
print(format_report(rep), flush=True)
for red in ("min", "prod", "mean"):
    from testtime.prm import summarize_rows
    from testtime.eval import ResultsFile
    r2 = summarize_rows(ResultsFile(WORK / "report" / "samples.jsonl").load(), max_n=16, reduction=red)
    log("reduction", red, {k: round(v[16], 3) for k, v in r2.accuracy.items()})
shutil.copy(WORK / "report" / "samples.jsonl", OUT / "report_samples.jsonl")
shutil.copy(WORK / "report" / "report.json", OUT / "report.json")
plot_report(rep, OUT / "prm_report.png", title=f"arith (test, {n_test} problems) - SmolLM2-135M, default PRM head")
log("done")
