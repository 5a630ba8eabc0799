"""Declining to answer: a sentence that refuses, or says that none of the options is right."""

from __future__ import annotations

import re
from collections.abc import Sequence


class Prefiltered:
    """A case-insensitive pattern whose every match contains one of `literals` (lowercase). In ASCII
    text, where lowercasing is exact, it runs only where one occurs: patterns like these, opening with
    \\b and an alternation, are tried at every character (4 us a sentence, tens of sentences a CoT)."""

    def __init__(self, pattern: str, literals: Sequence[str]):
        self.pattern, self.literals = re.compile(pattern, re.IGNORECASE), tuple(literals)

    def search(self, text: str, pos: int = 0) -> re.Match | None:
        if text.isascii():
            lowered = text[pos:].lower()
            if not any(literal in lowered for literal in self.literals):
                return None
        return self.pattern.search(text, pos)


REFUSAL = Prefiltered(
    r"\b(?:cannot|can't|can not|unable to|impossible|not possible|insufficient|not enough information"
    r"|(?:is|are) not (?:provided|given)|without (?:the|more|further|additional|specific)"
    r"|does not provide|none of the (?:options|choices)|not (?:available )?in the (?:options|choices))\b"
    r"|无法|不能确定|没有正确",
    ("can", "unable", "impossible", "not", "insufficient", "without", "none"),
)
# Saying that no option is right: after a chosen option it withdraws the choice.
NO_OPTION = Prefiltered(
    r"\b(?:none of the (?:options|choices|answers|above|given)|not (?:among|in|one of) the (?:given |answer )?"
    r"(?:options|choices)|(?:is|are) not listed|no (?:correct|valid|matching) (?:answer|option|choice))\b"
    r"|不在选项|没有正确(?:答案|选项)|选项中没有",
    ("none", "not", "no correct", "no valid", "no matching"),
)
