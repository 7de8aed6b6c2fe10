"""`VLLMEngine`: generate with an in-process `vllm.LLM` (GPU), prefix caching on, tensor parallelism passed through.

We render every prompt ourselves (`_prompt.encode_request`, the in-process engine's rendering, which avoids the
trimmed-partial and double-BOS traps) and hand vLLM token ids, so a partial assistant answer continues exactly
where it stopped, token for token when `Request.partial_token_ids` is known. `start()` returns a
`TextLiveBatch`: each `advance` is one `LLM.generate` call over all live rows (one sampling batch per search
step), and the shared prefixes it re-sends are served from vLLM's prefix cache, which is why caching is on.

As in `OpenAIEngine`, a request with n completions becomes n vLLM requests seeded derive_seed(seed, i), so
completion i does not depend on n; prefix caching computes their common prompt once.

Logprobs: `SamplingParams.logprobs = k` becomes vLLM's `logprobs=k`. vLLM answers, per generated token, a dict
{token id: Logprob(logprob, rank, decoded_token)} holding the top k *and* the sampled token (k + 1 entries when
it is not among them), sampled token first; we read the sampled token's logprob from it and keep the k entries
of rank 1..k, descending. vLLM's `token_ids` end with the end-of-sequence token when one ended the completion
(its text does not show it); like the in-process engine, a `Completion` leaves that token out of `token_ids`
and `logprobs` (it is still counted in `usage` and its logprob stays in `cumulative_logprob`).

Honest status: written against vLLM's documented API (`LLM(...)`, `LLM.generate`, `SamplingParams`,
`RequestOutput`/`CompletionOutput`) and unit-tested with a fake `vllm` module (tests/test_vllm_engine.py).
It has not been run on a GPU with a real vLLM in this repository.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .._errors import EngineError, MissingDependencyError, ValidationError
from ._live import as_lists
from ._prompt import encode_request, eos_token_ids
from ._sampling import derive_seed
from ._types import Completion, EngineUsage, Request, RequestOutput, SamplingParams, TokenLogprobs
from .text_batch import TextLiveBatch

__all__ = ["VLLMEngine", "DEFAULT_GPU_MEMORY_UTILIZATION"]

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's own default: KV cache gets what the weights leave of 90%


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise MissingDependencyError("vllm", "vllm", "VLLMEngine") from None
    return vllm


class VLLMEngine:
    """An `Engine` running `vllm.LLM` in this process.

    Args:
        model: Hub id or local directory, as `vllm.LLM(model=...)` takes it.
        tensor_parallel_size: GPUs to shard the model over (vLLM's `tensor_parallel_size`).
        enable_prefix_caching: Keep on: live-batch advances re-send each row's prefix.
        gpu_memory_utilization: Fraction of GPU memory vLLM may use.
        max_model_len: Context length; None takes the model's.
        dtype: "auto", "bfloat16", "float16", ...
        seed: Seeds completions whose `SamplingParams.seed` is None (and vLLM's own generator).
        logprobs: Ask vLLM for the sampled tokens' logprobs, so `cumulative_logprob` is filled in (requests with
            `SamplingParams.logprobs` set ask for theirs, and get per-token `Completion.logprobs`, either way).
        llm_kwargs: Anything else for `vllm.LLM(...)` (e.g. {"enforce_eager": True, "quantization": "awq"}).
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int | None = None,
        logprobs: bool = True,
        llm_kwargs: dict | None = None,
    ) -> None:
        if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
            raise ValidationError(
                f"`tensor_parallel_size` must be an integer >= 1, got {tensor_parallel_size!r}.",
                parameter="tensor_parallel_size",
                value=tensor_parallel_size,
            )
        if not 0 < gpu_memory_utilization <= 1:
            raise ValidationError(
                f"`gpu_memory_utilization` must be in (0, 1], got {gpu_memory_utilization}.",
                parameter="gpu_memory_utilization",
                value=gpu_memory_utilization,
            )
        self._vllm = _import_vllm()
        kwargs = dict(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=enable_prefix_caching,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
        )
        if seed is not None:
            kwargs["seed"] = seed
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(llm_kwargs or {})
        try:
            self.llm = self._vllm.LLM(**kwargs)
        except (OSError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"vLLM could not load model {model!r}: {first}") from None
        self.model_name = model
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = eos_token_ids(self.tokenizer)
        self.logprobs = logprobs
        self.usage = EngineUsage()
        self.seed = seed
        self._seeds = random.Random(seed)

    def __repr__(self) -> str:
        return f"VLLMEngine({self.model_name!r})"

    def generate(
        self,
        requests: Request | Sequence[Request],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        """Complete every request in one `LLM.generate` call; outputs in input order."""
        reqs, plist = as_lists(requests, params)
        prompts, vparams, where = [], [], []  # where[k] = (request index, completion index)
        prompt_lens = []
        for i, (req, p) in enumerate(zip(reqs, plist, strict=True)):
            prompt, partial = encode_request(self.tokenizer, req)
            ids = prompt + partial
            prompt_lens.append(len(ids))
            base = p.seed if p.seed is not None else self._seeds.getrandbits(63)
            for j in range(p.n):
                prompts.append({"prompt_token_ids": ids})
                vparams.append(self._sampling_params(p, derive_seed(base, j)))
                where.append((i, j))
        self.usage.num_calls += 1
        results = self.llm.generate(prompts, vparams, use_tqdm=use_tqdm)
        if len(results) != len(prompts):
            raise EngineError(f"vLLM returned {len(results)} outputs for {len(prompts)} prompts")
        outputs = [RequestOutput(completions=[Completion() for _ in range(p.n)], num_prompt_tokens=n) for p, n in zip(plist, prompt_lens, strict=True)]
        for (i, j), res in zip(where, results, strict=True):
            out = res.outputs[0]
            outputs[i].completions[j] = _completion(out, j, plist[i], self.eos_ids)
            # Prompt tokens served from the prefix cache are not recomputed; count only the rest.
            cached = getattr(res, "num_cached_tokens", None) or 0
            self.usage.num_prefill_tokens += max(0, len(res.prompt_token_ids or ()) - cached)
            self.usage.num_cached_prompt_tokens += min(cached, len(res.prompt_token_ids or ()))
            self.usage.num_generated_tokens += len(out.token_ids)
        return outputs

    def start(
        self,
        requests: Request | Sequence[Request] = (),
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> TextLiveBatch:
        """A live batch; each `advance` is one `LLM.generate` over the live rows."""
        return TextLiveBatch(self, requests, params)

    def _sampling_params(self, p: SamplingParams, seed: int):
        return self._vllm.SamplingParams(
            n=1,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k > 0 else -1,  # -1 disables on every vLLM version; 0 only on newer ones
            seed=seed,
            stop=list(p.stop) or None,
            include_stop_str_in_output=p.include_stop_str_in_output,
            ignore_eos=p.ignore_eos,
            # 0: only the sampled token's logprob (vLLM then fills cumulative_logprob)
            logprobs=p.logprobs if p.logprobs is not None else (0 if self.logprobs else None),
        )


def _completion(out, index: int, p: SamplingParams, eos_ids: set[int]) -> Completion:
    """Map a vLLM `CompletionOutput`: finish "stop" with a string `stop_reason` is a stop string; "stop" with
    None (EOS) or a token id (stop_token_ids) is end-of-sequence, and that last token is left out."""
    if out.finish_reason == "length":
        finish, stop_reason = "length", None
    elif out.finish_reason == "stop":
        if isinstance(out.stop_reason, str) and out.stop_reason in p.stop:
            finish, stop_reason = "stop", out.stop_reason
        else:
            finish, stop_reason = "eos", None
    else:
        raise EngineError(f"vLLM ended a completion with finish_reason {out.finish_reason!r}; expected 'stop' or 'length'")
    token_ids = list(out.token_ids)
    positions = out.logprobs if p.logprobs is not None else None
    if p.logprobs is not None and (positions is None or len(positions) != len(token_ids)):
        got = "no logprobs" if positions is None else f"logprobs for {len(positions)} positions"
        raise EngineError(f"vLLM returned {got} for a completion of {len(token_ids)} tokens (asked for logprobs={p.logprobs}); check the vLLM version's `CompletionOutput.logprobs`")
    if finish == "eos" and token_ids and (token_ids[-1] == out.stop_reason or token_ids[-1] in eos_ids):
        token_ids = token_ids[:-1]
        positions = None if positions is None else positions[:-1]
    return Completion(
        index=index,
        text=out.text,
        token_ids=token_ids,
        cumulative_logprob=out.cumulative_logprob,
        finish_reason=finish,
        stop_reason=stop_reason,
        logprobs=None if positions is None else _token_logprobs(token_ids, positions, p.logprobs),
    )


def _token_logprobs(token_ids: list[int], positions, k: int) -> TokenLogprobs:
    """`TokenLogprobs` from vLLM's per-position {token id: Logprob} dicts: the sampled token's entry, and the k
    largest entries, descending (the dict holds the sampled token too, with its true rank, which may be > k)."""
    out = TokenLogprobs()
    for t, (tok, entries) in enumerate(zip(token_ids, positions, strict=True)):
        if not entries or tok not in entries:
            raise EngineError(f"vLLM's logprobs for token {t} do not hold the sampled token {tok}; check the vLLM version's `CompletionOutput.logprobs`")
        out.logprobs.append(float(entries[tok].logprob))
        out.tokens.append(tok)
        # The k largest; ties by vLLM's rank (a sampled token outside the top k may tie with the k-th), then id.
        top = sorted(entries.items(), key=lambda e: (-e[1].logprob, e[1].rank if e[1].rank is not None else 0, e[0]))[:k]
        out.top_logprobs.append([float(lp.logprob) for _, lp in top])
        out.top_tokens.append([tid for tid, _ in top])
    return out
