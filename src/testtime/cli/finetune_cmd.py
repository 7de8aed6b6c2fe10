"""`testtime finetune --data FILE --out MODEL_DIR`: supervised fine-tuning on exported traces (TRL SFTTrainer)."""

from __future__ import annotations

from ._common import finite

HELP = "fine-tune the generator on SFT data from `testtime export` (TRL SFTTrainer; full or --lora, merged on save); writes a model dir --model loads"


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="SFT JSONL from `testtime export --format sft` (required)")
    p.add_argument("--out", required=True, help="model directory to write: weights, tokenizer, loss.png, checkpoints/ (required)")
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a local directory or a hub id (default: %(default)s)")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) on every linear layer, merged into the weights on save (default: full fine-tuning)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; -1 runs --epochs (default: %(default)s)")
    p.add_argument("--epochs", type=finite("--epochs"), default=1.0, help="passes over the data when --max-steps is -1 (default: %(default)s)")
    p.add_argument("--lr", type=finite("--lr"), default=None, help="learning rate (default: 1e-5, with --lora 1e-4)")
    p.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch (default: %(default)s)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=1024, help="tokens per example, prompt + completion (default: %(default)s)")
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps, for --resume (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="data order and LoRA init (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints (default: off)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from ..finetune import FinetuneParams, finetune

    params = FinetuneParams(
        max_steps=args.max_steps,
        num_epochs=args.epochs,
        learning_rate=args.lr if args.lr is not None else (1e-4 if args.lora else 1e-5),
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        save_steps=args.save_steps,
        seed=args.seed,
    )
    result = finetune(args.data, args.out, model=args.model, params=params, resume=args.resume, progress=not args.no_progress)
    last = f", last loss {result.losses[-1][1]:.4f}" if result.losses else ""
    print(f"fine-tuned on {result.num_examples} examples ({len(result.losses)} steps logged{last}); model: {result.out} (use --model {result.out}); loss curve: {result.out / 'loss.png'}")
    return 0
