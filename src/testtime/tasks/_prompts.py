"""Default prompts per task, and the one function that turns a question into chat messages.

Every prompt asks for steps separated by a blank line, because step-level strategies (beam search, PRM
scoring) split completions on "\\n\\n", and for a closing "Therefore, the final answer is: $\\boxed{...}$"
line, which the grader extracts first.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MATH_SYSTEM_PROMPT",
    "GSM8K_SYSTEM_PROMPT",
    "ARITH_SYSTEM_PROMPT",
    "build_messages",
]

# Copied verbatim from huggingface/search-and-learn, src/sal/config.py (`Config.system_prompt`, the default
# of every recipes/Llama-3.2-1B-Instruct/*.yaml run on MATH-500), at commit 027a727e98ac33893160d0ed473cc6f879236e01.
MATH_SYSTEM_PROMPT = (
    "Solve the following math problem efficiently and clearly:\n\n"
    "- For simple problems (2 steps or fewer):\nProvide a concise solution with minimal explanation.\n\n"
    "- For complex problems (3 steps or more):\nUse this step-by-step format:\n\n"
    "## Step 1: [Concise description]\n[Brief explanation and calculations]\n\n"
    "## Step 2: [Concise description]\n[Brief explanation and calculations]\n\n"
    "...\n\n"
    "Regardless of the approach, always conclude with:\n\n"
    "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct.\n\n"
    "Where [answer] is just the final number or expression that solves the problem."
)

# GSM8K golds are plain numbers, so the last sentence asks for a number, not "number or expression";
# everything else is the search-and-learn prompt above, so results stay comparable.
GSM8K_SYSTEM_PROMPT = MATH_SYSTEM_PROMPT.replace(
    "just the final number or expression that solves", "just the final number that solves"
)

# Written for SmolLM2-135M-Instruct, which ignores long instructions but copies the shape of worked examples:
# the system prompt stays short and the few-shot turns (`arith.few_shot_examples`: solved problems of the
# same level) carry the format: one calculation per step, blank lines between steps, the boxed closing
# line. Tuned with scripts/calibrate_arith.py.
ARITH_SYSTEM_PROMPT = (
    "Solve the math word problem step by step. Write each step as one short sentence with its calculation, "
    "and leave a blank line between steps. Always conclude with:\n\n"
    "Therefore, the final answer is: $\\boxed{answer}$.\n\n"
    "Where [answer] is just the final number."
)


def build_messages(
    question: str, *, system_prompt: str, few_shot: Sequence[tuple[str, str]] = ()
) -> list[dict[str, str]]:
    """Chat messages: the system prompt (left out when ""), few-shot user/assistant turns, then the question."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for user, assistant in few_shot:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": question})
    return messages
