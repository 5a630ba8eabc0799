"""The ways a response marks its final answer: one registry, read by extraction (`located.py`) and by the
cut of a response that runs on past its answer (`region.py`).

Each marker has two spellings because the two readers ask different things. `pattern` finds the marker
WITH its answer, for extraction. `opening` finds where the marker is written, answer or not: the first
opening of any marker in a response ends the line after which a run-on continuation may start. The
openings were first one hand-written regex (`_FIRST_MARKER`, commit 80ccb22, for the continuation cut),
kept beside the extraction patterns (5a453b4, 031be1a) as a second list; the commits state no reason for
where they differ. Each entry keeps its difference and says what it does: removing any one of them
changes no cut and no extraction on the 35,636 recorded responses and 20,000 bench CoTs, so nothing in
the data argues either way, and behaviour stays as it was. The openings are matched case-insensitively,
with ^ at line starts, as that one regex was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_CANDIDATES_PER_MARKER = 5  # bounds brace scans and choice matching on marker-heavy tails


@dataclass(frozen=True, slots=True)
class AnswerMarker:
    method: str  # the `Extraction.method` of an answer it marks
    pattern: re.Pattern  # the marker with its answer (group "answer" for a phrase)
    # Where the marker is written, answer or not (a regex, matched case-insensitively, ^ at line starts),
    # for where a response's answer region ends; None: this marker never ends it.
    opening: str | None
    # Cheap pre-checks that spare the regex scan of a whole tail where it cannot match: literals every
    # match contains (case-sensitive), and words every match starts at (case-insensitive; see `matches_at`).
    required: tuple[str, ...] = ()
    starts_at: tuple[str, ...] = ()

    def finditer(self, text: str) -> list[re.Match]:
        """`pattern.finditer(text)`, through the pre-checks."""
        for literal in self.required:  # a loop: all() over a generator costs more than the check saves
            if literal not in text:
                return []
        if self.starts_at:
            return matches_at(self.pattern, text, self.starts_at)
        return list(self.pattern.finditer(text))


def matches_at(pattern: re.Pattern, text: str, words: Sequence[str]) -> list[re.Match]:
    """`pattern.finditer(text)` for a pattern whose every match starts at one of `words` (lowercase,
    matched case-insensitively), tried only there: a scan of every a/c/o took 40 us a 2,000-character CoT.
    Lowercasing keeps positions only in ASCII text; other text is scanned whole."""
    if not text.isascii():
        return list(pattern.finditer(text))
    lowered = text.lower()
    starts = []
    for word in words:
        position = lowered.find(word)
        while position >= 0:
            starts.append(position)
            position = lowered.find(word, position + 1)
    matches: list[re.Match] = []
    for start in sorted(starts):
        if matches and start < matches[-1].end():
            continue  # finditer resumes after a match
        match = pattern.match(text, start)
        if match is not None:
            matches.append(match)
    return matches


_BOXED_OPENING = r"\\(?:boxed|fbox)\s*\{"
_GSM8K_OPENING = r"^####"

# <answer>...</answer>: only the last tag counts, and then nothing else does. The answer has been given
# where the tag closes, so the closing tag is the opening (a tag spanning lines ends the region at its last line).
ANSWER_TAG = AnswerMarker("answer_tag", re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE), r"</answer>")
# \boxed{...} / \fbox{...}; the pattern ends at the opening brace, the answer runs to the brace that closes it.
BOXED = AnswerMarker("boxed", re.compile(_BOXED_OPENING), _BOXED_OPENING)
ANSWER_PHRASES = (
    AnswerMarker(
        "the_answer_is",
        # "\b(?:answer|choice|option)...", written to open with a character class: the regex engine then
        # skips ahead to the letters a/c/o instead of trying the alternation at every position
        re.compile(
            r"[aco](?<!\w.)(?:(?<=a)nswer|(?<=c)hoice|(?<=o)ption)"
            r"\s*\**\s*(?:is|:|=|would be|will be|should be)\s*[:*]*[ \t]*(?P<answer>[^\n]+)",
            re.IGNORECASE,
        ),
        # the opening leaves out "would/will/should be" (a hedged "the answer would be ..." ends no region)
        r"\b(?:answer|choice|option)\s*\**\s*(?:is|:|=)",
        starts_at=("answer", "choice", "option"),
    ),
    AnswerMarker(
        "the_answer_is",
        re.compile(r"答案(?:是|为)[:：]?\s*(?P<answer>[^\n]+)"),
        # the opening also takes "答案：" ("Answer:"), which the pattern does not extract
        r"答案(?:是|为|：|:)",
        required=("答案",),
    ),
    AnswerMarker("gsm8k_hash", re.compile(_GSM8K_OPENING + r"\s*(?P<answer>[^\n]+)", re.MULTILINE), _GSM8K_OPENING, required=("####",)),
    # "A:" has no opening: in GSM8K's few-shot layout ("Q: ... A: <reasoning> The answer is 5.") it opens the
    # reply, and as an opening it would let a header line inside that reply ("Hint: ...") cut the reasoning
    AnswerMarker("answer_line", re.compile(r"^\s*A:\s*(?P<answer>[^\n]+)", re.MULTILINE), None, required=("A:",)),
)
# "Wednesday is the correct answer.": the answer is the sentence before the marker
ANSWER_BEFORE = AnswerMarker(
    "correct_answer",
    re.compile(r"\s+is the (?:correct|right|final) answer"),
    r"\sis the (?:correct|right|final) answer",
    required=("is the ", " answer"),
)

MARKERS = (ANSWER_TAG, BOXED, *ANSWER_PHRASES, ANSWER_BEFORE)
# The first marker of a response, whichever it is (alternatives in registry order).
FIRST_OPENING = re.compile(
    "|".join(marker.opening for marker in MARKERS if marker.opening is not None), re.IGNORECASE | re.MULTILINE
)
