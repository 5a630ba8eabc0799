"""Multiple choice: the option a response names (its text, letter or value), or none when it names
several, withdraws its choice, or says that none of the options is right."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from pipeline.verify.extract.located import ALNUM, LocatedAnswer, rival, unbox
from pipeline.verify.extract.refusal import NO_OPTION, REFUSAL
from pipeline.verify.model import MAX_ANSWER_CHARS, Extraction
from pipeline.verify.normalize import canonical_boolean, compact_form, normalize_text, parse_number, strip_latex_wrappers

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
_MATH_BRACKETS = re.compile(r"\\[()\[\]]")
_VALUE_SIGN = re.compile(r"[\d\\^π√=]")  # what a stated value (not a sentence about one) contains
# Whitespace after a sentence stop; it opens with \s so the regex engine skips ahead to whitespace (a
# pattern opening with lookbehinds is tried at every character: 100 us a CoT's closing lines).
SENTENCE_BREAK = re.compile(r"\s(?<=[.!?。]\s)(?<!\bMr\.\s)(?<!\bMs\.\s)(?<!\bMrs\.\s)(?<!\bDr\.\s)\s*")
_CLOSING_LINES = 3  # lines searched for a named option when nothing is marked ("I hope this helps" may follow)
_MIN_PROSE_OPTION_CHARS = 3  # in free prose, "no", "k" or "A" are words, not the naming of an option


def extract_choice(tail: str, located: list[LocatedAnswer], choices: list[str]) -> Extraction:
    """The option named by the latest marked answer that gives one, unless it names several options or
    a sentence after it says no option is right. A marked value that is none of the options, or a marked
    refusal, ends the search: no option from earlier reasoning is picked up. Without a marked answer,
    the option named by the latest sentence of the last lines that names one (none if a sentence after
    it declines to answer or names several options)."""
    options_say_none = any(NO_OPTION.search(choice) or REFUSAL.search(choice) for choice in choices)
    for position, located_answer in enumerate(located):
        candidate, answer = located_answer.extraction, located_answer.answer
        if not options_say_none and NO_OPTION.search(tail, located_answer.start):
            return Extraction(None, "refusal")
        if names_several_options(answer, choices) and answer.strip() not in choices:
            return Extraction(None, _SEVERAL)
        matched = match_choice(answer, choices)
        if matched is not None:
            rivals = (_letter_rival(answer, matched, choices), rival(tail, located[position:]))
            return _choice_extraction(matched, choices, candidate.method, tuple(r for r in rivals if r))
        if REFUSAL.search(answer):
            return Extraction(None, "refusal")
        if _VALUE_SIGN.search(answer):
            return candidate  # a stated answer that is none of the options
        # a marker that announces no answer itself ("the answer is shown below"): look further back
    closing_lines = [line for line in tail.strip().splitlines() if line.strip()][-_CLOSING_LINES:]
    if len({_letter_of(line.strip()) for line in closing_lines if _LETTER_LEADING.match(line.strip())}) > 1:
        return Extraction(None, _SEVERAL)  # the options listed one per line ("(A) 1, 6, 7\n(D) 1, 2, 3")
    for sentence in [s for line in closing_lines for s in SENTENCE_BREAK.split(line)][::-1]:
        matched = match_choice(sentence, choices, in_prose=True)
        if matched is not None:
            return _choice_extraction(matched, choices, "last_line")
        if REFUSAL.search(sentence) or not options_say_none and NO_OPTION.search(sentence):
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
    if ALNUM.search(rest) and (_VALUE_SIGN.search(rest) or match_choice(rest, choices) is not None):
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
    # (isdigit() also takes "²", which \d does not match)
    thousands = (leading := _LEADING_DIGITS.match(phrase)) is not None and len(leading[0]) == 3  # "404" may be the tail of "10,404"
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
