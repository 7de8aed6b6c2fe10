"""Pairwise LLM judging through any OpenAI-compatible endpoint: the win rate of one response set against another.

The Speculative Rejection paper checks that SpR's choices are not just reward-hacked by asking
GPT-4-Turbo which of SpR's and BoN's responses is better. Here the judge is any model behind `/chat/completions`
(OpenAI, vLLM, llama.cpp, ...); prompt and model are configurable. With `swap=True` every pair is judged in
both orders and a verdict counts only half each time, which cancels the judge's position bias.

The verdict format follows MT-Bench's pairwise judge: the reply ends with "[[A]]", "[[B]]" or "[[C]]" (tie).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._errors import EngineError, MissingDependencyError, ValidationError

__all__ = ["JudgeConfig", "DEFAULT_JUDGE_PROMPT", "judge_pair", "win_rate", "judge_spr_vs_bon"]

DEFAULT_JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. Choose the assistant that follows the user's instructions and answers "
    "the user's question better, considering helpfulness, relevance, accuracy, depth and level of detail. Do not "
    "let the order or the length of the responses influence you. After a short explanation, output your final "
    'verdict strictly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and '
    '"[[C]]" for a tie.\n\n[User Question]\n{question}\n\n[The Start of Assistant A\'s Answer]\n{a}\n'
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]"
)
_VERDICT = re.compile(r"\[\[([ABC])\]\]")


@dataclass
class JudgeConfig:
    """Where the judge lives and how it is asked."""

    base_url: str = ""
    """OpenAI-compatible API root ending in /v1, e.g. https://api.openai.com/v1."""
    model: str = ""
    """Judge model name (the paper used gpt-4-turbo)."""
    api_key: str | None = None
    prompt: str = DEFAULT_JUDGE_PROMPT
    """Template with {question}, {a} and {b}; the reply must contain [[A]], [[B]] or [[C]]."""
    swap: bool = True
    """Judge every pair in both orders (position-bias control)."""
    max_tokens: int = 512
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ValidationError("the judge needs `base_url` (--judge-url), an OpenAI-compatible API root ending in /v1.", parameter="judge_url")
        if not self.model:
            raise ValidationError("the judge needs `model` (--judge-model), e.g. gpt-4-turbo.", parameter="judge_model")
        for key in ("{question}", "{a}", "{b}"):
            if key not in self.prompt:
                raise ValidationError(f"the judge prompt must contain {key}.", parameter="judge_prompt")


def _client(config: JudgeConfig):
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError("httpx", "remote", "the LLM judge") from None
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    return httpx.Client(base_url=config.base_url.rstrip("/") + "/", headers=headers, timeout=config.timeout)


def judge_pair(config: JudgeConfig, question: str, a: str, b: str, *, client=None) -> str | None:
    """"A", "B", "C" (tie), or None when the reply has no verdict."""
    own = client is None
    client = client or _client(config)
    try:
        body = {
            "model": config.model,
            "messages": [{"role": "user", "content": config.prompt.format(question=question, a=a, b=b)}],
            "temperature": 0,
            "max_tokens": config.max_tokens,
        }
        resp = client.post("chat/completions", json=body)
        if resp.status_code != 200:
            raise EngineError(f"the judge at {config.base_url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        text = resp.json()["choices"][0]["message"]["content"] or ""
    finally:
        if own:
            client.close()
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def win_rate(config: JudgeConfig, items: Sequence[tuple[str, str, str]], *, client=None, progress: bool = False) -> dict:
    """Win rate of the first response over the second in (question, first, second) items: a win counts 1, a
    tie 0.5; with `swap`, each order counts half. Judgments without a verdict are left out and counted."""
    own = client is None
    client = client or _client(config)
    points, count, invalid, wins, losses, ties = 0.0, 0, 0, 0, 0, 0
    try:
        for question, first, second in items:
            orders = [(first, second, "A"), (second, first, "B")] if config.swap else [(first, second, "A")]
            for a, b, first_is in orders:
                v = judge_pair(config, question, a, b, client=client)
                if v is None:
                    invalid += 1
                    continue
                count += 1
                if v == "C":
                    points, ties = points + 0.5, ties + 1
                elif v == first_is:
                    points, wins = points + 1.0, wins + 1
                else:
                    losses += 1
    finally:
        if own:
            client.close()
    return {"win_rate": points / count if count else None, "num_judgments": count, "wins": wins, "losses": losses, "ties": ties, "invalid": invalid}


def judge_spr_vs_bon(config: JudgeConfig, rows: list[dict], bench, problems, *, log: Callable[[str], None] = print, client=None) -> dict:
    """Per SpR alpha, the judge's win rate of SpR's choice against BoN-N0's choice on the same problems."""
    from ..strategies import Candidate
    from ..strategies._select import best_of_n

    by = {(r["method"], r["problem_id"]): r for r in rows}
    questions = {p.id: p.question for p in problems}
    out = {}
    for alpha in bench.alphas:
        m = bench.spr_method(alpha)
        items = []
        for pid, q in questions.items():
            if ("bon", pid) not in by or (m, pid) not in by or by[(m, pid)]["selected"] is None:
                continue
            base = by[("bon", pid)]["candidates"][: bench.baseline_n]
            pick = best_of_n([Candidate(score=c["score"]) for c in base])
            items.append((q, by[(m, pid)]["candidates"][by[(m, pid)]["selected"]]["text"], base[pick]["text"]))
        out[m] = win_rate(config, items, client=client)
        log(f"LLM judge ({config.model}): {m} vs BoN-{bench.baseline_n}: win rate {out[m]['win_rate']} over {out[m]['num_judgments']} judgments")
    return out
