"""`finetune`: supervised fine-tuning of a generator on exported traces with TRL's SFTTrainer.

Full fine-tuning by default; with `lora`, a LoRA adapter on every linear layer (peft), merged into the weights on
save, so the output directory is a plain model that `--model DIR` loads like any other. The directory gets the
weights, the tokenizer with its chat template, `loss.png`, `finetune.json` (settings and the loss history) and
`checkpoints/` (the Trainer's, for `resume`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import MissingDependencyError, ValidationError, check
from ..eval._plot import plot_loss
from ._data import load_sft_data

__all__ = ["FinetuneParams", "FinetuneResult", "finetune"]

CHECKPOINTS = "checkpoints"


@dataclass
class FinetuneParams:
    """How to train. Defaults suit the 135M embedded model on a CPU: small batches, a modest learning rate."""

    max_steps: int = -1
    """Optimizer steps; -1 runs `num_epochs` over the data."""
    num_epochs: float = 1.0
    learning_rate: float = 1e-5
    """1e-5 for full fine-tuning; LoRA usually wants ~1e-4."""
    batch_size: int = 4
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 1024
    """Tokens per example (prompt + completion); longer ones are cut at the end."""
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    save_steps: int = 50
    """A checkpoint every this many steps (the last two are kept), what `resume` continues from."""
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.max_steps == -1 or self.max_steps >= 1, f"--max-steps must be >= 1 (or -1 for epochs), got {self.max_steps}.", parameter="max_steps", value=self.max_steps)
        check(self.num_epochs > 0, f"--epochs must be > 0, got {self.num_epochs}.", parameter="num_epochs", value=self.num_epochs)
        check(self.learning_rate > 0, f"--lr must be > 0, got {self.learning_rate}.", parameter="learning_rate", value=self.learning_rate)
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "save_steps"):
            value = getattr(self, name)
            check(value >= 1, f"`{name}` must be >= 1, got {value}.", parameter=name, value=value)


@dataclass
class FinetuneResult:
    out: Path
    num_examples: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) as the Trainer logged it, every step, across resumed runs."""


def _check_out(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start fresh); refuses to train over a finished model without `resume`."""
    ckpts = sorted((out / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    if resume:
        check(bool(ckpts), f"--resume: no checkpoint under {out / CHECKPOINTS}; drop --resume to start a new run.", parameter="resume")
        return ckpts[-1]
    if out.exists() and any(out.iterdir()):
        raise ValidationError(f"--out {out} is not empty; pass --resume to continue its training, or another --out.", parameter="out")
    return None


def _load(model: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .._errors import EngineError
    from ..engines import EMBEDDED_MODEL_NAMES, embedded_model_dir

    path = embedded_model_dir() if model.lower() in EMBEDDED_MODEL_NAMES else model
    try:
        # fp32 master weights: a bf16 copy would lose the small updates of a short run (mixed precision on a GPU
        # still computes in bf16).
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise EngineError(f"could not load model {model!r}: {str(exc).strip().splitlines()[0]}") from None


def finetune(data: str | Path, out: str | Path, *, model: str = "default", params: FinetuneParams | None = None, resume: bool = False, progress: bool = True) -> FinetuneResult:
    """Fine-tune `model` on the SFT file `data` and write the tuned model to `out` (see the module docstring).

    Raises `DataError` for a bad data file (before any model loads) and `ValidationError` for an `out` that holds
    something and no `resume`, or `resume` without a checkpoint."""
    import torch

    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        raise MissingDependencyError("trl", "train", "testtime finetune") from None

    params = params or FinetuneParams()
    out = Path(out)
    dataset = load_sft_data(data)
    checkpoint = _check_out(out, resume)
    hf_model, tokenizer = _load(model)
    peft_config = None
    if params.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    config = SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        max_steps=params.max_steps,
        num_train_epochs=params.num_epochs,
        learning_rate=params.learning_rate,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum,
        max_length=params.max_length,
        logging_steps=1,
        save_steps=params.save_steps,
        save_total_limit=2,
        seed=params.seed,
        report_to="none",
        disable_tqdm=not progress,
        # TRL defaults to bf16 mixed precision and gradient checkpointing, for large models on GPUs. bf16 where the
        # hardware has it; no checkpointing: a 135M model's activations fit, and recomputing them costs ~30%.
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=False,
    )
    trainer = SFTTrainer(model=hf_model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    tuned = trainer.model.merge_and_unload() if params.lora else trainer.model
    tuned.save_pretrained(out)
    tokenizer.save_pretrained(out)
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    plot_loss(losses, out / "loss.png", title=f"SFT of {model} on {Path(data).name}")
    meta = {"model": model, "data": str(data), "num_examples": len(dataset), "params": asdict(params), "losses": losses}
    (out / "finetune.json").write_text(json.dumps(meta, indent=2) + "\n")
    return FinetuneResult(out=out, num_examples=len(dataset), losses=losses)
