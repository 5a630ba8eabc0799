"""Only the answer to THIS question counts: where a response runs on past its answer (a new "Question:"
of a leaked few-shot prompt, chat-template tokens, a switch to another script), it is cut there first."""

from __future__ import annotations

import re

from pipeline.verify.extract.markers import FIRST_OPENING

# Where a response runs on past its answer: a new prompt turn of a leaked few-shot prompt, or chat tokens.
_HEADER_LINE = (
    r"[ \t]*(?:#{1,4}[ \t]*)?(?:\*\*)?(?:question|problem|query|human|user|instruction|hint|q|问题|题目)"
    r"[ \t]*\d*[ \t]*(?:\*\*)?[ \t]*[:：]"
)
# Split so that each search starts with one literal the regex engine skips ahead to: one pattern with
# ^ (MULTILINE) and alternatives that start differently is tried at every character, 40 us a CoT.
_FIRST_LINE_HEADER = re.compile(_HEADER_LINE, re.IGNORECASE)
_NEXT_LINE_HEADER = re.compile("\n" + _HEADER_LINE, re.IGNORECASE)
_CHAT_TOKENS = (re.compile(r"<\|(?:im_start|im_end|user|endoftext|eot_id)\|>", re.IGNORECASE), re.compile(r"\[INST\]", re.IGNORECASE))
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
_CJK_CHARS = re.compile(f"[{_CJK}]")
_LATIN_LETTERS = re.compile(r"[A-Za-z]")
# Prose in the other script: 20+ CJK characters, or 6+ Latin words (not formulas or labels).
_CJK_PROSE = re.compile(f"[{_CJK}](?:[{_CJK}\\s，。、；：？！（）\\d]){{19,}}")
_LATIN_PROSE = re.compile(r"\b[A-Za-z]{2,}(?:[ ,;]+[A-Za-z]{2,}\b){5,}")


def answer_region(text: str) -> str:
    """`text` up to where it continues past its first explicit answer (see `continuation_start`)."""
    start = continuation_start(text)
    return text if start is None else text[:start]


def continuation_start(text: str) -> int | None:
    """Where a response that has given its answer runs on: a new prompt turn ("Question: ...", chat
    tokens: few-shot leakage) or prose in another script (English after a Chinese answer, or the reverse)
    after the line of its first explicit answer (the first opening of a marker, see `markers.py`). None
    when it does not."""
    header = _continuation_header(text, 0)
    has_cjk = not text.isascii() and _CJK_CHARS.search(text) is not None
    if header is None and not has_cjk:
        return None
    first = FIRST_OPENING.search(text)
    if first is None:
        return None
    line_end = text.find("\n", first.end())
    answered = len(text) if line_end < 0 else line_end
    starts = []
    header = _continuation_header(text, answered)
    if header is not None:
        starts.append(header)
    if has_cjk:
        before = text[:answered]
        written_in_cjk = len(_CJK_CHARS.findall(before)) > len(_LATIN_LETTERS.findall(before))
        other_script = _LATIN_PROSE if written_in_cjk else _CJK_PROSE
        switch = other_script.search(text, answered)
        if switch is not None:
            starts.append(switch.start())
    return min(starts) if starts else None


def _continuation_header(text: str, pos: int) -> int | None:
    """Start of the first prompt-turn header at or after `pos`: a header line, or a chat token anywhere."""
    starts = []
    if pos == 0 and _FIRST_LINE_HEADER.match(text):
        starts.append(0)
    line = _NEXT_LINE_HEADER.search(text, max(pos - 1, 0))  # a line starting at pos follows the \n before it
    if line is not None:
        starts.append(line.start() + 1)
    starts += [token.start() for token in (pattern.search(text, pos) for pattern in _CHAT_TOKENS) if token is not None]
    return min(starts) if starts else None
