"""Find the final answer in a (long) chain of thought; map multiple-choice answers to the option text.

Only the answer to THIS question counts: a response that runs on past its answer (a new "Question:"
of a leaked few-shot prompt, chat-template tokens, a switch to another script) is cut there first.
Order of evidence: an <answer> tag; otherwise the LAST explicit marker (a balanced \\boxed{}, "the
answer is ...", "Answer:", "X is the correct answer", GSM8K's "####"/"A:"); otherwise, only where
the answer type allows, what the prose emphasises or concludes (see `fallback_number`).
Conflicting evidence is no answer: several options named at once, or (see `Extraction.rivals`) a
different answer stated right next to the final one, which the verifier judges too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pipeline.verify.model import MAX_ANSWER_CHARS, MAX_SCAN_CHARS, NUMERIC_ANSWER_TYPES, Extraction
from pipeline.verify.normalize import (
    canonical_boolean,
    compact_form,
    normalize_text,
    parse_number,
    strip_latex_wrappers,
)

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MAX_CANDIDATES_PER_MARKER = 5  # bounds brace scans and choice matching on marker-heavy tails
# (method, pattern, a literal every match contains, or the words every match starts at case-insensitively):
# the literal is looked for first, a cheap pre-check that spares the regex scan of the whole tail where it
# cannot match; a pattern with start words is tried only where they are (see `_matches_at`).
_ANSWER_PHRASES = (
    (
        "the_answer_is",
        # "\b(?:answer|choice|option)...", written to open with a character class: the regex engine then
        # skips ahead to the letters a/c/o instead of trying the alternation at every position
        re.compile(
            r"[aco](?<!\w.)(?:(?<=a)nswer|(?<=c)hoice|(?<=o)ption)"
            r"\s*\**\s*(?:is|:|=|would be|will be|should be)\s*[:*]*[ \t]*(?P<answer>[^\n]+)",
            re.IGNORECASE,
        ),
        ("answer", "choice", "option"),
    ),
    ("the_answer_is", re.compile(r"答案(?:是|为)[:：]?\s*(?P<answer>[^\n]+)"), "答案"),
    ("gsm8k_hash", re.compile(r"^####\s*(?P<answer>[^\n]+)", re.MULTILINE), "####"),
    ("answer_line", re.compile(r"^\s*A:\s*(?P<answer>[^\n]+)", re.MULTILINE), "A:"),
)
# "Wednesday is the correct answer.": the answer is the sentence before the marker
_ANSWER_BEFORE = re.compile(r"\s+is the (?:correct|right|final) answer")
_ANSWER_BEFORE_LITERALS = ("is the ", " answer")
_CONDITIONAL = re.compile(r"\W*(?:if|unless|when|suppose)\b", re.IGNORECASE)  # "If x > 3, the answer is A."
# Where an answer phrase ends: a sentence stop, a clause break or an explanation.
_SPAN_END = re.compile(r"[.!?](?:\s|$)|\$?\.(?=The\b)|[;。，]|,\s(?!\(?[A-Z]\)?(?:,|\s+(?:and|or)\b|\.|$)|(?:and|or)\s+\(?[A-Z]\b)|\s(?:because|since|which|as|so|and therefore)\s", re.IGNORECASE)
# A number that stands for itself: not an exponent or index, not the coefficient of a term ("24π", "5x",
# "3\\sqrt{2}") and not the first operand of an expression ("158 + LK").
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\^_\w])-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?"
    r"(?!\d|\.\d|\s*(?:π|\\pi|√|\\sqrt)|[a-zA-Z](?![a-zA-Z])|\s*[+*/^×·]\s*[\w\\(]|\s*-\s*[a-zA-Z\\])"
)
_WHOLE_RESPONSE_MAX_CHARS = 60  # a response this short, on one line, is its own answer

_LEADING_NUMBER = re.compile(r"(-?\$?\d[\d,]*(?:\.\d+)?%?)\s+(?!and\b|or\b|to\b|,|/|-)[a-z]")
_BOLD_NUMBER = re.compile(r"\*\*\s*(-?\$?\d[\d,]*(?:\.\d+)?%?)\s*\*\*")
# A sentence (decimal points do not end it) that opens with a word announcing a result.
_CONCLUSION = re.compile(
    r"(?:^|(?<=[.!?\n]))[\s*]*(?:therefore|thus|so|hence|in total|total|overall|finally)\b(?:[^.!?\n]|\.(?=\d))*",
    re.IGNORECASE,
)


class _Prefiltered:
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


_REFUSAL = _Prefiltered(
    r"\b(?:cannot|can't|can not|unable to|impossible|not possible|insufficient|not enough information"
    r"|(?:is|are) not (?:provided|given)|without (?:the|more|further|additional|specific)"
    r"|does not provide|none of the (?:options|choices)|not (?:available )?in the (?:options|choices))\b"
    r"|无法|不能确定|没有正确",
    ("can", "unable", "impossible", "not", "insufficient", "without", "none"),
)
# Saying that no option is right: after a chosen option it withdraws the choice.
_NO_OPTION = _Prefiltered(
    r"\b(?:none of the (?:options|choices|answers|above|given)|not (?:among|in|one of) the (?:given |answer )?"
    r"(?:options|choices)|(?:is|are) not listed|no (?:correct|valid|matching) (?:answer|option|choice))\b"
    r"|不在选项|没有正确(?:答案|选项)|选项中没有",
    ("none", "not", "no correct", "no valid", "no matching"),
)
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
# The first explicit answer, for where a continuation may start (its line is the answer's).
_FIRST_MARKER = re.compile(
    r"</answer>|\\(?:boxed|fbox)\s*\{|\b(?:answer|choice|option)\s*\**\s*(?:is|:|=)|答案(?:是|为|：|:)|^####"
    r"|\sis the (?:correct|right|final) answer",
    re.IGNORECASE | re.MULTILINE,
)
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
_HAS_CJK = _CJK_CHARS = re.compile(f"[{_CJK}]")
_LATIN_LETTERS = re.compile(r"[A-Za-z]")
# Prose in the other script: 20+ CJK characters, or 6+ Latin words (not formulas or labels).
_CJK_PROSE = re.compile(f"[{_CJK}](?:[{_CJK}\\s，。、；：？！（）\\d]){{19,}}")
_LATIN_PROSE = re.compile(r"\b[A-Za-z]{2,}(?:[ ,;]+[A-Za-z]{2,}\b){5,}")
_SPAN_GAP_MAX_CHARS = 150  # a stated answer this close before the final one is stated alongside it
_NEGATION = re.compile(r"\b(?:not|except|excluding|other than|rather than|instead of|besides)\b|n't\b", re.IGNORECASE)
_OPTION_WORD = re.compile(r"[a-z]{2,}")
_PLAIN_WITH_DIGITS = re.compile(r"^(?=.*\d)[^+*/^=\\{}]*$")  # "10:15 a.m", "2-5-3-1-4": no formula
_LATEX_COMMAND = re.compile(r"\\[a-z]+")

_LETTER_ONLY = re.compile(r"^[(\[]?([A-Za-z])[)\]]?$")
_LETTER_LEADING = re.compile(r"^(?:(?i:option|choice)\s*\(?([A-Z])\)?(?![\w(])|\(?([A-Z])(?:\)|[.:]\s|\s+\(|\s*$))")
_LETTER_BRACKETED = re.compile(r"\(([A-Z])\)")
# Several options at once: "A, C and E", "(A) and (D)", "\\boxed{(A),(B),(C),(D),(E)}".
_LETTER_LIST = re.compile(r"^\(?[A-Z]\)?(?:\s*(?:,|and|or|&|/|、)\s*\(?[A-Z]\)?)+$")
_SEVERAL = "several_answers"
_MAX_WORDS_AROUND_LETTER = 3
_ALNUM = re.compile(r"\w")
_MATH_BRACKETS = re.compile(r"\\[()\[\]]")
_PRONOUNS = frozenset({"this", "that", "it", "which", "this option", "that option", "this choice", "so"})
_VALUE_SIGN = re.compile(r"[\d\\^π√=]")  # what a stated value (not a sentence about one) contains
# Whitespace after a sentence stop; it opens with \s so the regex engine skips ahead to whitespace (a
# pattern opening with lookbehinds is tried at every character: 100 us a CoT's closing lines).
_SENTENCE_BREAK = re.compile(r"\s(?<=[.!?。]\s)(?<!\bMr\.\s)(?<!\bMs\.\s)(?<!\bMrs\.\s)(?<!\bDr\.\s)\s*")
_CLOSING_LINES = 3  # lines searched for a named option when nothing is marked ("I hope this helps" may follow)
_MIN_PROSE_OPTION_CHARS = 3  # in free prose, "no", "k" or "A" are words, not the naming of an option


def extract_answer(
    text: str,
    *,
    question_type: str = "free_form",
    choices: Sequence[str] | None = None,
    answer_type: str = "text",
) -> Extraction:
    """The final answer of `text` (up to where it runs on past its answer). Multiple choice: the option
    that the latest marked answer names (its text, letter, or number), else the option the closing
    sentences name. Numeric types fall back to the numbers of the prose; text types to a response short
    enough to be the answer itself."""
    tail = answer_region(text or "")[-MAX_SCAN_CHARS:]
    located = located_answers(tail)
    if question_type == "multi_choice" and choices:
        return _extract_choice(tail, located, list(choices))
    numeric = answer_type in NUMERIC_ANSWER_TYPES
    if located:
        best = located[0].extraction
        rival = _rival(tail, located)
        answer = numeric_core(best.answer) if numeric else best.answer
        return Extraction(answer, best.method, () if rival is None else (numeric_core(rival) if numeric else rival,))
    if _is_short_single_line(tail) and (not numeric or parse_number(tail) is not None):
        return Extraction(tail.strip(), "whole_response")
    if numeric:
        return fallback_number(tail)
    return Extraction(None, "none")


def answer_region(text: str) -> str:
    """`text` up to where it continues past its first explicit answer (see `continuation_start`)."""
    start = continuation_start(text)
    return text if start is None else text[:start]


def continuation_start(text: str) -> int | None:
    """Where a response that has given its answer runs on: a new prompt turn ("Question: ...", chat
    tokens: few-shot leakage) or prose in another script (English after a Chinese answer, or the reverse)
    after the line of its first explicit answer. None when it does not."""
    header = _continuation_header(text, 0)
    has_cjk = not text.isascii() and _HAS_CJK.search(text) is not None
    if header is None and not has_cjk:
        return None
    first = _FIRST_MARKER.search(text)
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


def find_marked_answer(text: str) -> Extraction | None:
    """The explicitly marked final answer, if any."""
    marked = marked_answers(text)
    return marked[0] if marked else None


@dataclass(frozen=True)
class LocatedAnswer:
    start: int
    end: int
    extraction: Extraction


def marked_answers(text: str) -> list[Extraction]:
    """Explicitly marked answers, most authoritative first (see `located_answers`)."""
    return [located.extraction for located in located_answers(text)]


def located_answers(text: str) -> list[LocatedAnswer]:
    """Explicitly marked answers and where they are, most authoritative first: the last <answer> tag,
    then every box and answer phrase from the last one backwards (phrases inside "If ..." sentences are
    conditions; a box inside an answer phrase counts once, as the phrase with the box opened)."""
    tagged = list(_ANSWER_TAG.finditer(text))
    if tagged:
        inner = tagged[-1][1].strip()
        return [LocatedAnswer(tagged[-1].start(), tagged[-1].end(), Extraction(last_boxed(inner) or inner, "answer_tag"))]
    found: list[LocatedAnswer] = []
    for start in [match.end() for match in _BOXED.finditer(text)][-_MAX_CANDIDATES_PER_MARKER:]:
        end = _matching_brace(text, start)
        if end is not None:
            found.append(LocatedAnswer(start, end, Extraction(text[start:end].strip(), "boxed")))
    phrases: list[LocatedAnswer] = []
    boxed_phrases: list[tuple[int, int]] = []  # where phrases whose answer holds a box are
    for method, pattern, literal in _ANSWER_PHRASES:
        if isinstance(literal, str) and literal not in text:
            continue
        matches = _matches_at(pattern, text, literal) if isinstance(literal, tuple) else list(pattern.finditer(text))
        for match in matches[-_MAX_CANDIDATES_PER_MARKER:]:
            span = trim_answer_span(match["answer"])
            if _ALNUM.search(span) and not _in_conditional_sentence(text, match.start()):
                phrases.append(LocatedAnswer(match.start(), match.end(), Extraction(unbox(span), method)))
                if _BOXED.search(span):
                    boxed_phrases.append((match.start(), match.end()))
    before = _ANSWER_BEFORE.finditer(text) if all(literal in text for literal in _ANSWER_BEFORE_LITERALS) else ()
    for match in list(before)[-_MAX_CANDIDATES_PER_MARKER:]:
        start = _sentence_start(text, match.start())
        span = trim_answer_span(_last_clause(text[start : match.start()]))
        if _ALNUM.search(span) and normalize_text(span) not in _PRONOUNS:
            phrases.append(LocatedAnswer(start, match.end(), Extraction(unbox(span), "correct_answer")))
            if _BOXED.search(span):
                boxed_phrases.append((start, match.start()))
    boxes = [box for box in found if not any(start <= box.start <= end for start, end in boxed_phrases)]
    return sorted([*boxes, *phrases], key=lambda located: located.start, reverse=True)


def _matches_at(pattern: re.Pattern, text: str, words: Sequence[str]) -> list[re.Match]:
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


def _last_clause(sentence: str) -> str:
    """ "Based on this, we conclude that option (B) 70" -> "we conclude that option (B) 70"."""
    return re.split(r",\s|;\s", sentence)[-1]


def unbox(span: str) -> str:
    """The answer with every balanced \\boxed{...} opened ("12 - 3 = \\boxed{9}" -> "12 - 3 = 9") and an
    unclosed leading one dropped ("\\boxed{D." -> "D")."""
    for _ in range(_MAX_CANDIDATES_PER_MARKER):
        match = _BOXED.search(span)
        if match is None:
            break
        end = _matching_brace(span, match.end())
        if end is None:
            return span[match.end() :].strip() if match.start() == 0 else span
        span = span[: match.start()] + span[match.end() : end] + span[end + 1 :]
    return span.strip()


def _rival(text: str, located: list[LocatedAnswer]) -> str | None:
    """A different answer stated right before the final one ("\\boxed{540}. The answer is: (C)"), which
    must agree with it for the final answer to count; farther back, an earlier answer is a revision."""
    if len(located) < 2:
        return None
    final, previous = located[0], located[1]
    if final.extraction.method == previous.extraction.method == "boxed":
        return None  # boxed intermediate results ("Path 1: \\boxed{1} tree. ... a total of \\boxed{3}")
    gap = text[previous.end : final.start]
    if len(gap) > _SPAN_GAP_MAX_CHARS or previous.extraction.answer == final.extraction.answer:
        return None
    return previous.extraction.answer


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance (nested braces allowed), else None."""
    starts = [match.end() for match in _BOXED.finditer(text)]
    for start in reversed(starts[-_MAX_CANDIDATES_PER_MARKER:]):
        end = _matching_brace(text, start)
        if end is not None:
            return text[start:end].strip()
    return None


def _matching_brace(text: str, start: int) -> int | None:
    """Index of the "}" closing the "{" just before `start`, or None if it never closes."""
    depth = 1
    for position in range(start, len(text)):
        char = text[position]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return position
    return None


def _sentence_start(text: str, position: int) -> int:
    return max(text.rfind(stop, 0, position) for stop in (". ", "? ", "! ", ": ", "\n")) + 1


def _in_conditional_sentence(text: str, position: int) -> bool:
    return _CONDITIONAL.match(text, _sentence_start(text, position)) is not None


def trim_answer_span(span: str) -> str:
    """Cut an answer phrase at its sentence end ("1.2. So ..." -> "1.2") and drop markdown emphasis."""
    span = span.replace("**", "").strip()
    end = _first_break_outside_brackets(span)
    return span[:end].strip().rstrip(".").strip()


def _first_break_outside_brackets(span: str) -> int:
    depth = scanned = 0
    for match in _SPAN_END.finditer(span):
        for char in span[scanned : match.start()]:
            depth += (char in "([{") - (char in ")]}")
        scanned = match.start()
        if depth <= 0:
            return match.start()
    return len(span)


def last_number(text: str) -> str | None:
    """The last number written in `text` ("$1,200.50", "3/4", "-2", "15%"), or None."""
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def fallback_number(text: str) -> Extraction:
    """The number a response without an answer marker gives as its answer: none if its last sentence
    declines to answer; else the last concluding sentence's ("Therefore ...") bold or last number;
    else the first number set in bold; else the last number."""
    if _REFUSAL.search(last_sentence(text)):
        return Extraction(None, "refusal")
    for conclusion in reversed(_CONCLUSION.findall(text)):
        bold = _BOLD_NUMBER.search(conclusion)
        number = bold[1] if bold else last_number(conclusion)
        if number is not None:
            return Extraction(number, "conclusion_number")
    bold = _BOLD_NUMBER.search(text)
    if bold:
        return Extraction(bold[1], "bold_number")
    number = last_number(text)
    return Extraction(number, "last_number") if number is not None else Extraction(None, "none")


def last_sentence(text: str) -> str:
    body = text.rstrip().rstrip(".!?")
    return body[max(body.rfind(stop) for stop in (". ", "? ", "! ", "\n")) + 1 :].strip()


def numeric_core(answer: str) -> str:
    """For numeric answer types: the value of "x = 5", the only number of "about 5 m (rounded)", the
    leading number of "1982 with a total of $931,441". A list ("1 and 9") stays as it is."""
    if parse_number(answer) is not None or "\\" in answer:
        return answer
    after_equals = answer.rpartition("=")[2].strip()
    if after_equals and parse_number(after_equals) is not None:
        return after_equals
    numbers = _NUMBER_IN_TEXT.findall(answer)
    if len(numbers) == 1:
        return numbers[0].rstrip(",")
    leading = _LEADING_NUMBER.match(answer)
    return leading[1] if leading else answer


def _is_short_single_line(text: str) -> bool:
    stripped = text.strip()
    return 0 < len(stripped) <= _WHOLE_RESPONSE_MAX_CHARS and "\n" not in stripped


def _extract_choice(tail: str, located: list[LocatedAnswer], choices: list[str]) -> Extraction:
    """The option named by the latest marked answer that gives one, unless it names several options or
    a sentence after it says no option is right. A marked value that is none of the options, or a marked
    refusal, ends the search: no option from earlier reasoning is picked up. Without a marked answer,
    the option named by the latest sentence of the last lines that names one (none if a sentence after
    it declines to answer or names several options)."""
    options_say_none = any(_NO_OPTION.search(choice) or _REFUSAL.search(choice) for choice in choices)
    for position, located_answer in enumerate(located):
        candidate = located_answer.extraction
        if not options_say_none and _NO_OPTION.search(tail, located_answer.start):
            return Extraction(None, "refusal")
        if names_several_options(candidate.answer, choices) and candidate.answer.strip() not in choices:
            return Extraction(None, _SEVERAL)
        matched = match_choice(candidate.answer, choices)
        if matched is not None:
            rivals = (_letter_rival(candidate.answer, matched, choices), _rival(tail, located[position:]))
            return _choice_extraction(matched, choices, candidate.method, tuple(r for r in rivals if r))
        if _REFUSAL.search(candidate.answer):
            return Extraction(None, "refusal")
        if _VALUE_SIGN.search(candidate.answer):
            return candidate  # a stated answer that is none of the options
        # a marker that announces no answer itself ("the answer is shown below"): look further back
    closing_lines = [line for line in tail.strip().splitlines() if line.strip()][-_CLOSING_LINES:]
    if len({_letter_of(line.strip()) for line in closing_lines if _LETTER_LEADING.match(line.strip())}) > 1:
        return Extraction(None, _SEVERAL)  # the options listed one per line ("(A) 1, 6, 7\n(D) 1, 2, 3")
    for sentence in [s for line in closing_lines for s in _SENTENCE_BREAK.split(line)][::-1]:
        matched = match_choice(sentence, choices, in_prose=True)
        if matched is not None:
            return _choice_extraction(matched, choices, "last_line")
        if _REFUSAL.search(sentence) or not options_say_none and _NO_OPTION.search(sentence):
            return Extraction(None, "refusal")
        if names_several_options(sentence, choices, in_prose=True):
            return Extraction(None, "none")  # "The red block is taller than the blue one.": for a judge model
    return Extraction(None, "none")


def _choice_extraction(
    matched: tuple[int, bool], choices: list[str], method: str, rivals: tuple[str, ...] = ()
) -> Extraction:
    index, by_letter = matched
    return Extraction(choices[index], "choice_letter" if by_letter else method, rivals)


def _letter_rival(answer: str, matched: tuple[int, bool], choices: list[str]) -> str | None:
    """The value written beside an option letter ("(B) 35°"), which must be that option's value; not
    checked where the options are drawn in the image and their texts are just letters."""
    index, by_letter = matched
    if not by_letter or _LETTER_ONLY.match(choices[index].strip()):
        return None
    stripped = strip_latex_wrappers(answer.replace("**", ""))
    leading = _LETTER_LEADING.match(stripped)
    rest = stripped[leading.end() :] if leading else _LETTER_BRACKETED.sub("", stripped, count=1)
    rest = _strip_stray_brackets(normalize_text(_MATH_BRACKETS.sub("", rest.replace("{}", ""))))
    if _ALNUM.search(rest) and (_VALUE_SIGN.search(rest) or match_choice(rest, choices) is not None):
        return rest
    return None


def _strip_stray_brackets(text: str) -> str:
    """Drop edge brackets left over from cutting a letter out of "B (R2)" or "(A) }\\boxed{4\\pi}"."""
    text = text.strip(" -")
    while text and (text[0] in ")]}" or text[-1] in "([{" or text[0] + text[-1] in ("()", "[]")):
        text = text[1:-1] if text[0] + text[-1] in ("()", "[]") else text.lstrip(")]}").rstrip("([{")
        text = text.strip(" -")
    while text.endswith(("}", ")")) and text.count(text[-1]) > text.count("{" if text[-1] == "}" else "("):
        text = text[:-1].strip()
    return text


def names_several_options(answer: str, choices: Sequence[str], *, in_prose: bool = False) -> bool:
    """Whether `answer` names two or more options at once: "A, C and E", "(A) and (D)", "P or Q"."""
    if len(answer) > MAX_ANSWER_CHARS:
        return False
    stripped = unbox(answer.strip().replace("**", "")).replace("\\text", "").strip(" .{}$")
    letters = set(_LETTER_BRACKETED.findall(stripped))
    if _LETTER_LIST.match(stripped):
        letters |= set(re.findall(r"[A-Z]", stripped))
    if len({letter for letter in letters if ord(letter) - ord("A") < len(choices)}) > 1:
        return True
    return len(_contained_options(normalize_text(answer), choices, in_prose)) > 1


def match_choice(answer: str, choices: Sequence[str], *, in_prose: bool = False) -> tuple[int, bool] | None:
    """(index, matched_by_letter) of the option `answer` names, or None when it names none or several.

    In order: an option's exact text; a letter ("B", "(B)", "B.", "(B) 5cm", "B (5cm)", "Option B"); an
    option's text up to case and spacing, or up to all spacing and math delimiters ("2+2\\sqrt{2}" for
    "$2+2 \\sqrt{2}$"); an equal number; the only option text it contains, whole, outside a formula and
    not negated ("all except E" names none). `in_prose` (a sentence, not an answer span) ignores contained
    options that are short common words, except a yes/no that opens or closes it ("No, he does not ...",
    "The statement is true.")."""
    if len(answer) > MAX_ANSWER_CHARS:
        return None
    stripped = answer.strip().replace("**", "").strip(" .")
    if stripped in choices:
        return list(choices).index(stripped), False
    letter = _letter_of(stripped)
    if letter is None and "\\" in stripped:
        letter = _letter_of(strip_latex_wrappers(stripped))  # "\\text{(D)}", "\\textbf{E}"
    if letter is not None and letter < len(choices):
        return letter, True
    normalized = normalize_text(answer)
    forms = _option_forms(tuple(choices))
    if normalized in forms.normalized:
        return forms.normalized.index(normalized), False
    compact = compact_form(answer)
    if compact and forms.compact.count(compact) == 1:
        return forms.compact.index(compact), False
    number = parse_number(answer)
    if number is not None and forms.values.count(number.value) == 1:
        return forms.values.index(number.value), False
    if in_prose:
        words = normalized.split()
        for edge_word in {words[0], words[-1]} if words else ():
            said = canonical_boolean(edge_word.strip(",.!"))
            if said is not None and forms.booleans.count(said) == 1:
                return forms.booleans.index(said), False
    contained = _contained_options(normalized, choices, in_prose)
    if len(contained) == 1:
        return contained.pop(), False
    return None


def _contained_options(normalized: str, choices: Sequence[str], in_prose: bool) -> set[int]:
    """Options whose text occurs whole in an answer that negates none ("no", "k" and yes/no words do not
    count in prose; a bare letter only in an answer of a few words, "bike A"; a formula never, and a number
    not inside one: "50" is not named by "50+5\\pi", "a+b" not by "\\frac{a+b}{2}")."""
    if _NEGATION.search(normalized):
        return set()
    forms = _option_forms(tuple(choices))
    letter_named = len(normalized.split()) <= _MAX_WORDS_AROUND_LETTER and not in_prose
    return {
        i
        for i, (option, nameable, common) in enumerate(zip(forms.normalized, forms.nameable, forms.common))
        if (letter_named if nameable is None else nameable)
        and _contains_phrase(normalized, option)
        and not (in_prose and common)
    }


@dataclass(frozen=True)
class _OptionForms:
    """What matching an answer needs of a question's options, worked out once per option list: a
    multiple-choice CoT's closing sentences are each matched against all of them."""

    normalized: tuple[str, ...]
    compact: tuple[str, ...]
    values: tuple[Fraction | None, ...]
    booleans: tuple[str | None, ...]
    # whether the option's text, found whole in an answer, names it: a word or plain value, never a
    # formula; None for a single character, which names it only in a short answer, not in prose
    nameable: tuple[bool | None, ...]
    common: tuple[bool, ...]  # too common a word to name the option in prose


@lru_cache(maxsize=4096)
def _option_forms(choices: tuple[str, ...]) -> _OptionForms:
    normalized = tuple(normalize_text(choice) for choice in choices)
    return _OptionForms(
        normalized=normalized,
        compact=tuple(compact_form(choice) for choice in choices),
        values=tuple(parsed.value if (parsed := parse_number(choice)) else None for choice in choices),
        booleans=tuple(canonical_boolean(option) for option in normalized),
        nameable=tuple(
            (bool(_OPTION_WORD.search(_LATEX_COMMAND.sub("", option)) or _PLAIN_WITH_DIGITS.match(option)) if len(option) > 1 else None)
            if option
            else False
            for option in normalized
        ),
        common=tuple(bool(option) and _is_common_word(option) for option in normalized),
    )


def _is_common_word(option: str) -> bool:
    """Too common in prose to count as naming the option ("no", "k"; numbers are fine)."""
    short_word = len(option) < _MIN_PROSE_OPTION_CHARS and parse_number(option) is None
    return short_word or canonical_boolean(option) is not None


def _letter_of(answer: str) -> int | None:
    for pattern in (_LETTER_ONLY, _LETTER_LEADING):
        match = pattern.match(answer)
        if match:
            letter = next(group for group in match.groups() if group)
            return ord(letter.upper()) - ord("A")
    bracketed = _LETTER_BRACKETED.findall(answer)
    if len(set(bracketed)) == 1:
        return ord(bracketed[0]) - ord("A")
    return None


def _contains_phrase(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` whole and on its own (see `_phrase_pattern`); a phrase that opens
    with a number must not be an operand either: not after an operator, spaced or not ("3 + 5", "x - 5",
    "2 \\times 5", "\\sqrt 3", "3:5"), nor the tail of a longer number ("404" in "10,404")."""
    if phrase not in text:
        return False
    pattern = _phrase_pattern(phrase)
    if not phrase[0].isdigit():
        return pattern.search(text) is not None
    thousands = len(_LEADING_DIGITS.match(phrase)[0]) == 3  # "404" may be the tail of "10,404"
    for match in pattern.finditer(text):
        start = match.start()
        before = text[max(0, start - _OPERATOR_LOOKBEHIND_CHARS) : start]
        if _OPERATOR_BEFORE.search(before) or thousands and _THOUSANDS_BEFORE.search(before):
            continue
        return True
    return False


_LEADING_DIGITS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")
_OPERATOR_LOOKBEHIND_CHARS = 12
# LaTeX commands that make a number beside them an operand or argument (units and relations do not).
_OPERATOR_COMMANDS = r"\\(?:sqrt|pi|times|cdot|div|pm|mp|frac|log|ln|sin|cos|tan)(?![a-z])"
_OPERATOR_BEFORE = re.compile(rf"(?:[+*/^×·÷√]|{_OPERATOR_COMMANDS}|[\w)}}\]][ \t]*-|\d[ \t]*:)[ \t]*$")
_THOUSANDS_BEFORE = re.compile(r"\d,$")
# After a number: an operator, spaced or not, a root or π, a bracket it multiplies, a ratio, thousands.
_OPERATOR_AFTER = (
    rf"|\s*[×·÷√π]|\(|\s*-\s*[\d\\(]|\s*{_OPERATOR_COMMANDS}|\s*:\s*\d|,\d{{3}}(?!\d)"
)


@lru_cache(maxsize=4096)
def _phrase_pattern(phrase: str) -> re.Pattern:
    """`phrase` as a whole word or number, outside a formula ("8 cm" is not inside "18 cm", "1" not
    inside "1.5", "2" not inside "-2\\pi"); a phrase with a number in it not followed by an operator,
    spaced or not, a root, π or a bracket ("2" is not inside "2 \\sqrt{3}", "2 √3" or "2(\\sqrt{3}-1)",
    "20 cm" not inside "20 cm \\times 2")."""
    after = _OPERATOR_AFTER if _DIGIT.search(phrase) else ""
    return re.compile(rf"(?<![\w.\\^_{{+\-*/=]){re.escape(phrase)}(?![\w}}^_+*/=]|\.\d|\s*[+*/=^]|\\{after})")
