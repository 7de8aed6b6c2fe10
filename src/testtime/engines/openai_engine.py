"""`OpenAIEngine`: generate with any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, `testtime serve`).

Three choices make every strategy's numbers mean the same here as on the in-process engine:

1. `n` fans out. A request with `n` completions is sent as n requests, completion i seeded with
   derive_seed(seed, i). Completion i then does not depend on n (the eval's "first m of N candidates" rule
   needs that), and each response's `usage.completion_tokens` counts exactly one completion. A server with
   prefix caching (vLLM's default) computes the shared prompt once.
2. Partial answers continue as text. `start()` returns a `TextLiveBatch`, which re-sends each row's text so
   far. On the chat endpoint that is vLLM's `continue_final_message: true, add_generation_prompt: false`
   (SGLang accepts the same fields); on the completions endpoint, with a `tokenizer`, we render the chat
   template locally (`_prompt.encode_request`, the same rendering as the in-process engine) and send token ids.
3. Stops are reported honestly. OpenAI's finish_reason "stop" covers both end-of-sequence and a stop string;
   vLLM's `stop_reason` (SGLang's `matched_stop`) tells which. "stop" without a matching stop string is our
   "eos". Step-level search needs the stop string kept in the text (vLLM's `include_stop_str_in_output`), so
   with `vllm_extensions=False` such requests are refused rather than silently cut.
4. Per-token logprobs (`SamplingParams.logprobs = k`) describe exactly the completion's tokens. On the chat
   endpoint we send `logprobs: true, top_logprobs: k + 1` and keep the k largest: vLLM fills the list with the
   first entries of a dict that starts with the *sampled* token, so asking for k would drop the k-th most
   likely token whenever the sampled one is not among the top k (OpenAI returns the top k + 1 proper; at
   k = 20, the cap, vLLM's list may hold the sampled token in place of the 20th). On the completions endpoint
   we send `logprobs: max(k, 1)`: vLLM answers every k with the sampled token's logprob and up to k + 1 top
   entries, but some servers (older SGLang, llama.cpp) treat 0 as "off"; the dicts are unordered, so we sort.
   End of sequence: vLLM and SGLang count the EOS token in `usage.completion_tokens` and give it a logprob
   entry (its string, e.g. "<|im_end|>", is not in the text); OpenAI and `testtime serve` do neither. Like
   the in-process engine, a `Completion` leaves it out: when a completion ends by EOS and the last entry is
   the EOS token (one of the `tokenizer`'s end-of-sequence strings; without a tokenizer, a special-looking
   "<...>" token that the text does not end with), that entry is dropped, and its logprob stays in
   `cumulative_logprob` (as in vLLM's and the in-process engine's sums). The completion's token count is then
   the number of entries, so `len(completion.logprobs) == completion.num_tokens` always holds, while
   `usage.num_generated_tokens` adds what the server counted: the EOS token, and on `testtime serve` every
   candidate a strategy sampled. A count below the number of entries, or `token_ids` of another length, is
   an `EngineError`.
5. Sampling is checked, not assumed. Some servers decode greedily whatever `temperature` says (`transformers
   serve` samples only when the request carries a generation config with `do_sample: true`, or the model's own
   says so): when every completion of a request sampled at temperature > 0 comes back identical, we warn once
   and name the fix, `extra_body` (`--extra-body`). Prompts on the completions endpoint go as token ids (exact)
   unless the server refuses them (`transformers serve` takes only strings): with `prompt_format="auto"` the
   first refusal (400/422) switches the engine to the rendered template as text for good. Any response field of
   the wrong type (a string token count, a message that is not an object) is an `EngineError` naming the server
   and the field.
"""

from __future__ import annotations

import copy
import json
import random
import re
import warnings
from collections.abc import Sequence

from .._errors import EngineError, ValidationError, error_context
from ._live import as_lists
from ._prompt import encode_request, eos_token_ids
from ._remote import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    RemoteClient,
    gather_all,
    normalize_base_urls,
)
from ._sampling import derive_seed
from ._types import (
    MAX_LOGPROBS,
    Completion,
    EngineUsage,
    Request,
    RequestOutput,
    SamplingParams,
    TokenLogprobs,
)
from .text_batch import TextLiveBatch

__all__ = ["OpenAIEngine", "DEFAULT_BASE_URL", "ENDPOINTS", "PROMPT_FORMATS", "TRANSFORMERS_SERVE_SAMPLING"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # `vllm serve` and `testtime serve` listen here by default
ENDPOINTS = ("chat", "completions")
PROMPT_FORMATS = ("auto", "ids", "text")
TRANSFORMERS_SERVE_SAMPLING = {"generation_config": json.dumps({"do_sample": True})}
"""The `extra_body` that makes `transformers serve` sample (it reads sampling only from a generation config)."""
MIN_IDENTICAL_TOKENS = 8
"""Completions shorter than this may agree by chance ("12"), so identical short ones raise no warning."""
SEED_BITS = 31  # llama.cpp takes uint32 seeds and some servers int32; 31 bits fit everywhere
_SPECIAL = re.compile(r"<[^<>\s]+>")  # "<|im_end|>", "</s>", "<eos>", "<｜end▁of▁sentence｜>"


def _load_tokenizer(tokenizer):
    if tokenizer is None or not isinstance(tokenizer, str):
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"could not load tokenizer {tokenizer!r}: {first} (pass a local directory or a hub id reachable from here)") from None


class OpenAIEngine:
    """An `Engine` backed by OpenAI-compatible HTTP servers.

    Args:
        model: The model name the server serves (the request's `model` field).
        base_url: One URL or several (list, or comma-separated), each ending in `/v1`; requests go round-robin,
            so a fleet of identical servers scales out, and a retry goes to the next server.
        api_key: Sent as a bearer token. Not read from the environment: a key meant for one server is never
            sent to another by accident.
        endpoint: "chat" (/chat/completions; the server applies its chat template) or "completions"
            (/completions; with `tokenizer`, we apply the template and send token ids, exact like in-process).
        tokenizer: A tokenizer object or name; needed for chat `messages` on the completions endpoint, and used
            to count tokens when a server reports no usage and to recognize the end-of-sequence token's
            logprob entry exactly.
        vllm_extensions: Send vLLM's extra fields when a request needs them (`continue_final_message`,
            `include_stop_str_in_output`, `top_k`, `ignore_eos`, `return_token_ids`). vLLM and SGLang accept
            them; strict servers (api.openai.com) reject unknown fields, so set False there.
        logprobs: Ask for the sampled tokens' logprobs and report their sum as `cumulative_logprob` (requests
            with `SamplingParams.logprobs` set get them, and per-token `Completion.logprobs`, either way).
        max_concurrency: HTTP requests in flight at once, over all servers.
        max_retries: Retries per request on 408/429/5xx, connection errors and timeouts (0 disables).
        timeout: Seconds per attempt.
        backoff: First retry's maximum random wait in seconds (doubles per attempt; Retry-After wins).
        seed: Seeds completions whose `SamplingParams.seed` is None, making whole runs reproducible.
        extra_body: Extra JSON fields sent with every request, over ours (e.g. {"min_p": 0.05} for vLLM;
            `TRANSFORMERS_SERVE_SAMPLING` for `transformers serve`, which otherwise decodes greedily).
        prompt_format: Completions endpoint with a tokenizer: "ids" sends token ids (exact), "text" the rendered
            template as a string, "auto" ids until a server refuses them, then text (module docstring, point 5).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] = DEFAULT_BASE_URL,
        api_key: str | None = None,
        endpoint: str = "chat",
        tokenizer=None,
        vllm_extensions: bool = True,
        logprobs: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        seed: int | None = None,
        extra_body: dict | None = None,
        prompt_format: str = "auto",
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValidationError(f"`model` must be the served model's name, got {model!r}.", parameter="model", value=model)
        if endpoint not in ENDPOINTS:
            raise ValidationError(f"`endpoint` must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}.", parameter="endpoint", value=endpoint)
        if prompt_format not in PROMPT_FORMATS:
            raise ValidationError(f"`prompt_format` must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}.", parameter="prompt_format", value=prompt_format)
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ValidationError(f"`extra_body` must be a dict of JSON fields, got {type(extra_body).__name__}.", parameter="extra_body", value=extra_body)
        self.model = model
        self.model_name = model
        self.base_urls = normalize_base_urls(base_url)
        self.endpoint = endpoint
        self.tokenizer = _load_tokenizer(tokenizer)
        self._eos_strings = None if self.tokenizer is None else _eos_strings(self.tokenizer)
        self.vllm_extensions = vllm_extensions
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})
        self.prompt_format = prompt_format
        self._text_prompts = prompt_format == "text"  # "auto" turns it on at the first refusal of token ids
        self._warned_identical = False
        self.client = RemoteClient(
            self.base_urls,
            api_key=api_key,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            what="OpenAIEngine",
        )
        self.usage = EngineUsage()
        self.seed = seed
        self._seeds = random.Random(seed)

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.model!r}, base_url={','.join(self.base_urls)!r}, endpoint={self.endpoint!r})"

    def concurrent_view(self) -> OpenAIEngine:
        """This engine for one of several threads calling at once (`ConcurrentEngine`): the same connections,
        in-flight limit and seed stream; its own `usage`."""
        view = copy.copy(self)
        view.usage = EngineUsage()
        return view

    def close(self) -> None:
        """Close the HTTP connections (the engine reopens them if used again)."""
        self.client.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the Engine protocol ----------------------------------------------------------------------------
    def generate(
        self,
        requests: Request | Sequence[Request],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm=False,
    ) -> list[RequestOutput]:
        """Complete every request; outputs in input order, completions in index order."""
        reqs, plist = as_lists(requests, params)
        jobs = []  # (request index, completion index, path, payload, prompt ids, params, prompt text)
        for i, (req, p) in enumerate(zip(reqs, plist, strict=True)):
            with error_context(f"request {i}"):
                path, body, prompt_ids, text = self._payload(req, p)
            base = p.seed if p.seed is not None else self._seeds.getrandbits(63)
            for j in range(p.n):
                jobs.append((i, j, path, {**body, "seed": derive_seed(base, j) % 2**SEED_BITS}, prompt_ids, p, text))
        self.usage.num_calls += 1
        bar = None
        if use_tqdm:  # True: our own bar; a callable: the caller's bar factory (the eval's transient bars)
            from tqdm.auto import tqdm

            make = use_tqdm if callable(use_tqdm) else tqdm
            bar = make(total=len(jobs), desc="generate", unit="seq", dynamic_ncols=True)
        try:
            results = self.client.run(gather_all([self._one(i, j, path, body, ids, p, text, bar) for i, j, path, body, ids, p, text in jobs]))
        finally:
            if bar is not None:
                bar.close()
        outputs = [RequestOutput(completions=[Completion() for _ in range(p.n)]) for p in plist]
        for (i, j, *_), (completion, prompt_tokens) in zip(jobs, results, strict=True):
            outputs[i].completions[j] = completion
            outputs[i].num_prompt_tokens = prompt_tokens
        self._check_sampled(plist, outputs)
        return outputs

    def _check_sampled(self, plist: Sequence[SamplingParams], outputs: Sequence[RequestOutput]) -> None:
        """Warn (once) when a request sampled at temperature > 0 got n identical completions: the server is
        decoding greedily, and a vote over copies of one answer is not the experiment the settings describe."""
        if self._warned_identical:
            return
        for p, out in zip(plist, outputs, strict=True):
            texts = {c.text for c in out.completions}
            if p.n >= 2 and p.temperature > 0 and len(texts) == 1 and min(c.num_tokens for c in out.completions) >= MIN_IDENTICAL_TOKENS:
                self._warned_identical = True
                warnings.warn(
                    f"OpenAIEngine: all {p.n} completions of a request sampled at temperature {p.temperature:g} came back identical "
                    f"from {','.join(self.base_urls)}; the server seems to decode greedily. `transformers serve` samples only with "
                    f"extra_body={TRANSFORMERS_SERVE_SAMPLING} (--extra-body '{json.dumps(TRANSFORMERS_SERVE_SAMPLING)}'); other servers: check "
                    "that they read `temperature` and `seed`",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return

    def start(
        self,
        requests: Request | Sequence[Request] = (),
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> TextLiveBatch:
        """A live batch whose rows continue through `generate` with partial assistant messages."""
        return TextLiveBatch(self, requests, params)

    # -- request / response mapping ---------------------------------------------------------------------
    def _payload(self, req: Request, p: SamplingParams) -> tuple[str, dict, list[int] | None, str | None]:
        """(path, JSON body without seed, prompt token ids when we tokenized locally, the same prompt as text when
        the body sends ids that a server may refuse)."""
        ext = self.vllm_extensions
        needs = [
            (p.top_k > 0, "top_k", "`top_k`"),
            (p.ignore_eos, "ignore_eos", "`ignore_eos`"),
            (bool(p.stop) and p.include_stop_str_in_output, "include_stop_str_in_output", "keeping stop strings in the output (step-level search does)"),
        ]
        for needed, field, what in needs:
            if needed and not ext:
                raise ValidationError(
                    f"{what} needs vLLM's `{field}` request field, but this engine has vllm_extensions=False; "
                    "use a vLLM or SGLang server with vllm_extensions=True.",
                    parameter=field,
                )
        body: dict = {"model": self.model, "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p}
        if p.stop:
            body["stop"] = list(p.stop)
        if ext:
            if p.stop and p.include_stop_str_in_output:
                body["include_stop_str_in_output"] = True
            if p.top_k > 0:
                body["top_k"] = p.top_k
            if p.ignore_eos:
                body["ignore_eos"] = True
        prompt_ids, text = None, None
        if self.endpoint == "chat":
            if req.messages is None:
                raise ValidationError(
                    "a raw `prompt` request needs the completions endpoint; build the engine with endpoint='completions'.",
                    parameter="prompt",
                )
            messages = [dict(m) for m in req.messages]
            if req.partial:
                if not ext:
                    raise ValidationError(
                        "continuing a partial answer on the chat endpoint needs vLLM's `continue_final_message`; set "
                        "vllm_extensions=True (vLLM, SGLang) or use endpoint='completions' with a tokenizer.",
                        parameter="partial",
                    )
                messages.append({"role": "assistant", "content": req.partial})
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            body["messages"] = messages
            if p.logprobs is not None:
                body["logprobs"] = True
                # One more than asked: see point 4 of the module docstring (vLLM lists the sampled token first).
                body["top_logprobs"] = p.logprobs + 1 if 0 < p.logprobs < MAX_LOGPROBS else p.logprobs
            elif self.logprobs:
                body["logprobs"] = True
            path = "/chat/completions"
        else:
            if self.tokenizer is not None:
                prompt, partial = encode_request(self.tokenizer, req)
                prompt_ids = prompt + partial
                if self._text_prompts:
                    body["prompt"] = _prompt_text(self.tokenizer, req)
                else:
                    body["prompt"] = prompt_ids
                    if self.prompt_format == "auto":
                        text = _prompt_text(self.tokenizer, req)  # sent instead if the server refuses ids
                    if ext:
                        body["return_token_ids"] = True  # exact token-for-token continuation in the live batch
            elif req.prompt is not None:
                body["prompt"] = req.prompt + req.partial
            else:
                raise ValidationError(
                    "chat `messages` on the completions endpoint need the model's chat template; pass `tokenizer=` "
                    "(a name or object) or use endpoint='chat'.",
                    parameter="tokenizer",
                )
            if p.logprobs is not None or self.logprobs:
                # The sampled token's logprob comes with the top-1; some servers read 0 as "no logprobs".
                body["logprobs"] = max(p.logprobs or 0, 1)
            path = "/completions"
        body.update(self.extra_body)
        return path, body, prompt_ids, text

    def _text_instead(self, body: dict, text: str, status: int, message: str) -> dict | None:
        """The body with a text prompt, when a server refused token ids (`RemoteClient.post`'s `on_reject`)."""
        if status not in (400, 422):
            return None
        if not self._text_prompts:
            self._text_prompts = True
            warnings.warn(
                f"OpenAIEngine: {','.join(self.base_urls)} refused a token-id prompt ({status}: {message[:120]}); sending prompts as "
                "text from now on (prompt_format='text', --prompt-format text, skips the refused first try)",
                RuntimeWarning,
                stacklevel=2,
            )
        return {**{k: v for k, v in body.items() if k != "return_token_ids"}, "prompt": text}

    async def _one(self, i: int, j: int, path: str, body: dict, prompt_ids, p: SamplingParams, text: str | None, bar) -> tuple[Completion, int]:
        with error_context(f"request {i}"):
            on_reject = None if text is None else (lambda status, message: self._text_instead(body, text, status, message))
            url, data = await self.client.post(path, body, on_reject=on_reject)
            completion, prompt_tokens, generated = self._parse(url + path, data, p, j, prompt_ids)
            cached = _cached_tokens(url + path, data, prompt_tokens)
        self.usage.num_prefill_tokens += prompt_tokens - cached
        self.usage.num_cached_prompt_tokens += cached
        self.usage.num_generated_tokens += generated
        if bar is not None:
            bar.update(1)
        return completion, prompt_tokens

    def _parse(self, where: str, data: dict, p: SamplingParams, index: int, prompt_ids) -> tuple[Completion, int, int]:
        """(completion, prompt tokens, generated tokens the server counted) from one response body."""
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EngineError(f"OpenAIEngine: {where} answered without `choices`: {str(data)[:160]}")
        choice = choices[0]
        if self.endpoint == "chat":
            message = choice.get("message")
            if not isinstance(message, dict):
                raise _wrong(where, "choices[0].message", message, "an object with `content`")
            text = _text_or_none(where, "choices[0].message.content", message.get("content"))
        else:
            text = _text_or_none(where, "choices[0].text", choice.get("text"))
        token_ids = choice.get("token_ids")
        if token_ids is not None and not (isinstance(token_ids, list) and all(_is_count(t) for t in token_ids)):
            raise _wrong(where, "choices[0].token_ids", token_ids, "a list of token ids")
        finish, stop_reason = _finish(where, choice, p)
        usage = data.get("usage")
        if usage is None:
            usage = {}
        if not isinstance(usage, dict):
            raise _wrong(where, "usage", usage, "an object")
        for name in ("prompt_tokens", "completion_tokens"):
            if usage.get(name) is not None and not _is_count(usage[name]):
                raise _wrong(where, f"usage.{name}", usage[name], "an integer >= 0")
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = len(prompt_ids) if prompt_ids is not None else 0
        if p.logprobs is not None:
            completion, generated = self._logprobs_completion(where, choice, text, token_ids, finish, stop_reason, usage, p, index)
            return completion, int(prompt_tokens), generated
        if self.endpoint == "chat":
            lp = (choice.get("logprobs") or {}).get("content")
            logprobs = [t.get("logprob") for t in lp] if isinstance(lp, list) else None
        else:
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
        num_tokens = usage.get("completion_tokens")
        if num_tokens is None:
            num_tokens = self._count(where, text, token_ids, logprobs)
        cumulative = None
        if self.logprobs and isinstance(logprobs, list) and all(isinstance(x, (int, float)) for x in logprobs):
            cumulative = float(sum(logprobs))
        completion = Completion(
            index=index,
            text=text,
            token_ids=list(token_ids) if token_ids is not None else [],
            cumulative_logprob=cumulative,
            finish_reason=finish,
            stop_reason=stop_reason,
            num_generated_tokens=None if token_ids is not None and len(token_ids) == num_tokens else int(num_tokens),
        )
        return completion, int(prompt_tokens), int(num_tokens)

    def _logprobs_completion(
        self, where: str, choice: dict, text: str, token_ids: list | None, finish: str, stop_reason: str | None, usage: dict, p: SamplingParams, index: int
    ) -> tuple[Completion, int]:
        """The completion with per-token logprobs (module docstring, point 4), and the tokens the server counted."""
        parse = _chat_logprobs if self.endpoint == "chat" else _completions_logprobs
        tokens, values, tops = parse(where, choice.get("logprobs"), p.logprobs)
        num_entries = len(values)
        if token_ids is not None and len(token_ids) != num_entries:
            raise _malformed(where, "choices[0].token_ids", f"holds {len(token_ids)} ids for {num_entries} logprob entries")
        cumulative = float(sum(values))  # the EOS entry, if any, stays in the sum
        if finish == "eos" and tokens and self._is_eos(tokens[-1], text):
            tokens, values, tops = tokens[:-1], values[:-1], tops[:-1]
            token_ids = None if token_ids is None else token_ids[:-1]
        counted = usage.get("completion_tokens")
        if counted is not None and (isinstance(counted, bool) or not isinstance(counted, int) or counted < len(values)):
            raise _malformed(where, "usage.completion_tokens", f"is {counted!r} for {len(values)} logprob entries")
        k = p.logprobs
        logprobs = TokenLogprobs(
            logprobs=values,
            tokens=list(tokens),
            top_logprobs=[[v for _, v in top[:k]] for top in tops],
            top_tokens=[[t for t, _ in top[:k]] for top in tops],
        )
        completion = Completion(
            index=index,
            text=text,
            token_ids=list(token_ids) if token_ids is not None else [],
            cumulative_logprob=cumulative,
            finish_reason=finish,
            stop_reason=stop_reason,
            num_generated_tokens=None if token_ids is not None else len(values),
            logprobs=logprobs,
        )
        return completion, counted if counted is not None else num_entries

    def _is_eos(self, token: str, text: str) -> bool:
        """Whether a completion's last logprob entry is the end-of-sequence token that ended it (vLLM and SGLang
        return one; its string is not part of the text)."""
        if self._eos_strings is not None:
            return token in self._eos_strings
        return _SPECIAL.fullmatch(token) is not None and not text.endswith(token)

    def _count(self, where: str, text: str, token_ids, logprobs) -> int:
        if token_ids is not None:
            return len(token_ids)
        if isinstance(logprobs, list):
            return len(logprobs)
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False).input_ids)
        raise EngineError(f"OpenAIEngine: {where} reported no `usage`; pass `tokenizer=` so tokens can be counted here")


def _prompt_text(tokenizer, req: Request) -> str:
    """The prompt as a string, for servers that take no token ids: the chat template rendered with a generation
    prompt (as `encode_request` renders it; the server's tokenizer adds BOS if it would), then the partial answer."""
    if req.messages is None:
        return req.prompt + req.partial
    return tokenizer.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True) + req.partial


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text_or_none(where: str, field: str, value) -> str:
    """A completion's text: a string, or null for an empty one."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(where, field, value, "a string")
    return value


def _cached_tokens(where: str, data: dict, prompt_tokens: int) -> int:
    """Prompt tokens the server read from its prefix cache (`usage.prompt_tokens_details.cached_tokens`, as OpenAI
    and vLLM report them); 0 when it does not say."""
    details = (data.get("usage") or {}).get("prompt_tokens_details")
    if details is None:
        return 0
    cached = details.get("cached_tokens") if isinstance(details, dict) else details
    if cached is None:
        return 0
    if not _is_count(cached) or cached > prompt_tokens:
        raise _wrong(where, "usage.prompt_tokens_details.cached_tokens", cached, f"an integer in [0, prompt_tokens = {prompt_tokens}]")
    return int(cached)


def _wrong(where: str, field: str, value, want: str) -> EngineError:
    shown = json.dumps(value, default=str)
    return EngineError(
        f"OpenAIEngine: {where} answered with `{field}` = {shown[:60]}{'...' if len(shown) > 60 else ''}, not {want}; "
        "the server does not follow OpenAI's response format"
    )


def _eos_strings(tokenizer) -> frozenset[str]:
    """The end-of-sequence tokens' strings as servers print them in logprobs (decoded one id at a time)."""
    strings = {tokenizer.decode([i]) for i in eos_token_ids(tokenizer)}
    if isinstance(getattr(tokenizer, "eos_token", None), str):
        strings.add(tokenizer.eos_token)
    return frozenset(s for s in strings if s)


def _malformed(where: str, field: str, problem: str) -> EngineError:
    return EngineError(
        f"OpenAIEngine: {where} answered with malformed logprobs: `{field}` {problem}; the request asked for per-token "
        "logprobs, so use a server that returns them in OpenAI's format (vLLM, SGLang, OpenAI)"
    )


def _number(where: str, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _malformed(where, field, f"is {str(value)[:40]!r}, not a number")
    return float(value)


def _top(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Descending by logprob; equal values keep the server's order."""
    return sorted(pairs, key=lambda t: -t[1])


def _chat_logprobs(where: str, logprobs, k: int) -> tuple[list[str], list[float], list[list[tuple[str, float]]]]:
    """(tokens, logprobs, top (token, logprob) pairs descending) from a chat choice's
    `logprobs = {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}`."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        got = "is missing" if logprobs is None or content is None else f"is a {type(content).__name__}, not a list"
        raise _malformed(where, "choices[0].logprobs.content", got)
    tokens, values, tops = [], [], []
    for t, entry in enumerate(content):
        field = f"choices[0].logprobs.content[{t}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise _malformed(where, f"{field}.token", "is not a string")
        tokens.append(entry["token"])
        values.append(_number(where, f"{field}.logprob", entry.get("logprob")))
        raw = entry.get("top_logprobs")
        if raw is None and k == 0:
            raw = []
        if not isinstance(raw, list):
            raise _malformed(where, f"{field}.top_logprobs", f"is {str(raw)[:40]!r}, not a list")
        pairs = []
        for r, top in enumerate(raw):
            if not isinstance(top, dict) or not isinstance(top.get("token"), str):
                raise _malformed(where, f"{field}.top_logprobs[{r}].token", "is not a string")
            pairs.append((top["token"], _number(where, f"{field}.top_logprobs[{r}].logprob", top.get("logprob"))))
        tops.append(_top(pairs))
    return tokens, values, tops


def _completions_logprobs(where: str, logprobs, k: int) -> tuple[list[str], list[float], list[list[tuple[str, float]]]]:
    """The same from a completions choice's legacy `logprobs = {"tokens", "token_logprobs", "top_logprobs":
    [{token: logprob}], "text_offset"}` (a top dict holds the sampled token too, in no particular order)."""
    if not isinstance(logprobs, dict):
        raise _malformed(where, "choices[0].logprobs", "is missing" if logprobs is None else "is not an object")
    tokens, values, tops = logprobs.get("tokens"), logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
    if tops is None and k == 0 and isinstance(tokens, list):
        tops = [{}] * len(tokens)
    for name, column in (("tokens", tokens), ("token_logprobs", values), ("top_logprobs", tops)):
        if not isinstance(column, list):
            raise _malformed(where, f"choices[0].logprobs.{name}", "is missing" if column is None else "is not a list")
    if not len(tokens) == len(values) == len(tops):
        raise _malformed(where, "choices[0].logprobs", f"has {len(tokens)} tokens, {len(values)} token_logprobs and {len(tops)} top_logprobs")
    out_values, out_tops = [], []
    for t, (token, value, top) in enumerate(zip(tokens, values, tops, strict=True)):
        if not isinstance(token, str):
            raise _malformed(where, f"choices[0].logprobs.tokens[{t}]", "is not a string")
        out_values.append(_number(where, f"choices[0].logprobs.token_logprobs[{t}]", value))
        if not isinstance(top, dict):
            raise _malformed(where, f"choices[0].logprobs.top_logprobs[{t}]", f"is {str(top)[:40]!r}, not an object")
        out_tops.append(_top([(s, _number(where, f"choices[0].logprobs.top_logprobs[{t}][{s!r}]", v)) for s, v in top.items()]))
    return list(tokens), out_values, out_tops


def _finish(where: str, choice: dict, p: SamplingParams) -> tuple[str, str | None]:
    """Our (finish_reason, stop_reason) from an OpenAI choice."""
    reason = choice.get("finish_reason")
    if reason == "length":
        return "length", None
    if reason == "stop":
        for matched in (choice.get("stop_reason"), choice.get("matched_stop")):
            if isinstance(matched, str) and matched in p.stop:
                return "stop", matched
        return "eos", None  # EOS, or a stop token id: the model ended the text itself
    raise EngineError(
        f"OpenAIEngine: {where} ended a completion with finish_reason {reason!r}; expected 'stop' or 'length' "
        "(tool calls, content filters and aborted requests are not supported)"
    )
