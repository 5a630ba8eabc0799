"""A reply's thinking and its final content, kept apart, and the one text built from both.

A server with a reasoning parser returns the thinking in a field of its own (`message.reasoning` in
current vLLM, `reasoning_content` in SGLang, DeepSeek's API and older vLLM). Without one, the thinking
arrives inline in the content as <think>...</think>, or with only the closing tag when the chat template
put the opening one in the prompt. `split_reasoning` is the one place that separates inline thinking,
for every backend.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CUT_OFF = "length"  # the finish_reason of a reply stopped by its token limit
TRUNCATED = "truncated"  # the verdict and quality reason of such a reply: a result, never judged or trained on


def split_reasoning(text: str | None, *, opened: bool = False) -> tuple[str | None, str | None]:
    """(reasoning, content) of a reply whose thinking is inline.

    The first closing tag splits the reply; an opening tag before it is dropped with whatever precedes
    it, as vLLM's parsers do, and nothing after it is content None (as they return it). An opening tag
    never closed, or no tag at all after a prompt that ended inside <think> (`opened`), is thinking cut
    off before any content. A reply with no tag at all is all content."""
    if text is None:
        return None, None
    head, closed, tail = text.partition(THINK_CLOSE)
    if closed:
        _, opens, thought = head.partition(THINK_OPEN)
        return thought if opens else head, tail or None
    _, opens, thought = text.partition(THINK_OPEN)
    if opens:
        return thought, None
    return (text, None) if opened else (None, text)


def prompt_opens_thinking(prompt: str) -> bool:
    """The rendered prompt ends inside a <think> block (the template opened it for the model)."""
    return prompt.rfind(THINK_OPEN) > prompt.rfind(THINK_CLOSE)


def reply_text(reasoning: str | None, content: str | None) -> str:
    """The reply as one text: the thinking in <think> tags ahead of the final content, or the content
    alone when the reply had no thinking of its own."""
    if reasoning is None:
        return content or ""
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{(content or '').strip()}"
