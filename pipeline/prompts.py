"""The chat prompt a problem is asked with, shared by teacher generation and the RL set.

One template per domain: the system prompt asks for reasoning inside <think>...</think> and then the
final answer in \\boxed{}, which is what the verifier extracts first and the format reward checks.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful problem solver. Think step by step inside <think> and </think>, "
    "then give only the final answer in \\boxed{}."
)
SYSTEM_PROMPTS: dict[str, str] = {
    "table_math": DEFAULT_SYSTEM_PROMPT + " Read every value you need from the table image.",
    "visual_math": DEFAULT_SYSTEM_PROMPT + " Use the figure; state the quantities you read from it.",
    "arithmetic_word": DEFAULT_SYSTEM_PROMPT,
}
CHOICE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def user_text(problem: Mapping) -> str:
    lines = [problem["question"]]
    choices = problem.get("choices")
    if choices and all(c.strip().upper() == CHOICE_LETTERS[i] for i, c in enumerate(choices)):
        # Options drawn in the figure (MATH-V): listing "(A) A" would say nothing.
        lines.append(f"Choices: {', '.join(choices)} (shown in the figure). Answer with the letter of the correct choice.")
    elif choices:
        lines.append("Choices:")
        lines += [f"({CHOICE_LETTERS[i]}) {choice}" for i, choice in enumerate(choices)]
        lines.append("Answer with the text of the correct choice.")
    if problem.get("unit"):
        lines.append(f"Give the answer in {problem['unit']}.")
    if problem.get("precision") is not None:
        lines.append(f"Round the answer to {problem['precision']} decimal places.")
    return "\n".join(lines)


def chat_messages(problem: Mapping, system_prompts: Mapping[str, str] = SYSTEM_PROMPTS) -> list[dict[str, str]]:
    """System + user messages with plain-string content (TRL adds image placeholders itself)."""
    system = system_prompts.get(problem["domain"], DEFAULT_SYSTEM_PROMPT)
    return [{"role": "system", "content": system}, {"role": "user", "content": user_text(problem)}]
