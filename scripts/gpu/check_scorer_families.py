"""CUDA + bf16 check of the five reward-model families on tiny local models: scores vs CPU fp32, batching on CUDA."""
import sys, torch
sys.path.insert(0, "tests")
from _tiny import make_llama
import test_scorers_families as T
from testtime.scorers import RLHFlowScorer, MathShepherdScorer, QwenPRMScorer, SkyworkPRMScorer, ORMScorer, ScoreRequest
from transformers import Qwen2Config, Qwen2ForTokenClassification, LlamaForSequenceClassification

def build(device):
    out = {}
    tok = T._tok(T.LLAMA3_LIKE); out["rlhflow"] = RLHFlowScorer(make_llama(tok, seed=1, init=0.05), tokenizer=tok, device=device)
    tok = T._tok(add_bos=True); out["math-shepherd"] = MathShepherdScorer(make_llama(tok, seed=2, init=0.05), tokenizer=tok, device=device)
    tok = T._tok(T.QWEN_LIKE); torch.manual_seed(3)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_labels=2, initializer_range=0.05, pad_token_id=tok.pad_token_id, use_sliding_window=False)
    out["qwen-prm"] = QwenPRMScorer(Qwen2ForTokenClassification(cfg).eval(), tokenizer=tok, device=device)
    tok = T._tok(T.QWEN_LIKE); m = make_llama(tok, seed=4, model_type="qwen2", init=0.05); torch.manual_seed(4)
    out["skywork-prm"] = SkyworkPRMScorer(m, tokenizer=tok, value_head=torch.nn.Linear(64, 1), device=device)
    tok = T._tok(T.QWEN_LIKE); m = make_llama(tok, seed=5, init=0.05); cfg = m.config; cfg.num_labels = 3; torch.manual_seed(5)
    out["orm"] = ORMScorer(LlamaForSequenceClassification(cfg).eval(), tokenizer=tok, head=2, device=device)
    return out

req = ScoreRequest(question=T.QUESTION, candidates=T.CANDIDATES)
cpu = {k: s.score(req)[0] for k, s in build("cpu").items()}
gpu = build("cuda")
ok = True
for k, s in gpu.items():
    dt = next(s.runner.model.parameters()).dtype
    s.runner.batch_size = 1; one = s.score(req)[0]
    s.runner.batch_size = 8; many = s.score(req)[0]
    d_cpu = max(abs(a - b) for x, y in zip(one, cpu[k]) for a, b in zip(x, y))
    d_batch = max(abs(a - b) for x, y in zip(one, many) for a, b in zip(x, y))
    n = [len(x) for x in many]
    print(f"{k:<14} dtype={dt} steps={n} max|cuda-cpu|={d_cpu:.4f} max|batch1-batch8|={d_batch:.4f}")
    ok &= d_cpu < 0.05 and d_batch < 0.02 and n == [len(x) for x in cpu[k]]
print("OK" if ok else "MISMATCH")
