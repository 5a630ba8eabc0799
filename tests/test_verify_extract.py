"""Answer extraction from chains of thought (pure functions, no worker processes)."""

import re

import pytest

from pipeline.verify import extract_answer
from pipeline.verify.extract import continuation_start, last_boxed, match_choice, trim_answer_span
from pipeline.verify.extract.markers import ANSWER_PHRASES, FIRST_OPENING, MARKERS


def test_last_box_wins_and_nested_braces_survive():
    text = r"First \boxed{2}. Then $x = \boxed{\frac{1}{\sqrt{2}}}$ is final."
    assert extract_answer(text) == extract_answer(text, answer_type="expression")
    assert extract_answer(text).answer == r"\frac{1}{\sqrt{2}}"
    assert extract_answer(text).method == "boxed"


def test_unclosed_last_box_falls_back_to_the_previous_balanced_one():
    assert last_boxed(r"\boxed{12} and then \boxed{\frac{1}{2") == "12"


def test_answer_tag_beats_box_and_may_contain_one():
    assert extract_answer(r"\boxed{1} <answer>\boxed{7}</answer>").answer == "7"
    assert extract_answer("<answer> 42 </answer>", answer_type="integer").method == "answer_tag"


@pytest.mark.parametrize(
    "text, expected, method",
    [
        ("... The answer is 85.875.", "85.875", "the_answer_is"),
        ("so 3 + 4 = 7\nAnswer: 7", "7", "the_answer_is"),
        ("**Final answer:** $1,200. I hope this helps", "$1,200", "the_answer_is"),
        ("16 - 7 = <<16-7=9>>9\n#### 9", "9", "gsm8k_hash"),
        ("She makes $<<9*2=18>>18\nA: 18", "18", "answer_line"),
        ("The answer is x = 5 because ...", "5", "the_answer_is"),
        ("Adding gives 12 apples, then 15 apples in total", "15", "last_number"),
        ("17", "17", "whole_response"),
    ],
)
def test_numeric_answers(text, expected, method):
    assert extract_answer(text, answer_type="integer") == extract_answer(text, answer_type="float")
    extraction = extract_answer(text, answer_type="integer")
    assert (extraction.answer, extraction.method) == (expected, method)


def test_no_last_number_fallback_for_text_answers():
    assert extract_answer("I counted 3 red\nand 4 blue things.", answer_type="text").answer is None
    assert extract_answer("", answer_type="integer").method == "none"


def test_answer_span_is_cut_at_the_sentence_end_but_not_inside_numbers():
    assert trim_answer_span("1.25. So we are done") == "1.25"
    assert trim_answer_span("[1, 2], as shown") == "[1, 2]"
    assert trim_answer_span("**yes**, since 3 > 2") == "yes"


CHOICES = ["3cm", "5cm", "7cm", "9cm"]


@pytest.mark.parametrize(
    "text, method",
    [
        ("The answer is (B).", "choice_letter"),
        ("The answer is B.", "choice_letter"),
        ("Answer: (B) 5cm", "choice_letter"),
        ("The answer is B. 5cm", "choice_letter"),
        ("Thus, the answer is B (5cm).", "choice_letter"),
        ("The answer is 5cm.", "the_answer_is"),
        ("The answer is 5 cm.", "the_answer_is"),
        (r"so \boxed{B}", "choice_letter"),
        ("Looking at the ruler, the pencil is 5cm long", "last_line"),
    ],
)
def test_multiple_choice_maps_to_the_option_text(text, method):
    extraction = extract_answer(text, question_type="multi_choice", choices=CHOICES, answer_type="text")
    assert (extraction.answer, extraction.method) == ("5cm", method)


def test_choice_matching_edge_cases():
    assert match_choice("E", CHOICES) is None  # no fifth option
    assert match_choice("5", ["5", "15"]) == (0, False)
    assert match_choice("there is a shortage", ["shortage", "surplus"]) == (0, False)
    assert match_choice("shortage or surplus", ["shortage", "surplus"]) is None  # names both
    assert match_choice("5.0", ["5", "7"]) == (0, False)


def test_yes_no_answers_are_found_as_text():
    assert extract_answer("The answer is Yes.", answer_type="boolean").answer == "Yes"


@pytest.mark.parametrize(
    "text, expected, method",
    [
        ("If x > 3, the answer is 7.\nOtherwise the answer is 2.", "2", "the_answer_is"),
        ("所以，答案是 24。", "24", "the_answer_is"),
        ("So the answer is 1982 with a total income of $931,441.", "1982", "the_answer_is"),
        ("The answer is 1 and 9.", "1 and 9", "the_answer_is"),  # two answers stay two
        ("x is **1**.\nx + 150 = 180\nTherefore, the value of x is **30**.", "30", "conclusion_number"),
        ("The maximum is **70**, reached in 2009; the minimum was 20.\nThanks!", "70", "bold_number"),
        ("So, Luca needs $0.06 + $0.07 = $0.13.\nIn two decimal places that is 0.13.", "$0.13", "conclusion_number"),
        ("E.g. f(x) = x^2 has degree 2.\nWithout the function, it's impossible to say.", None, "refusal"),
    ],
)
def test_answers_in_prose(text, expected, method):
    extraction = extract_answer(text, answer_type="integer")
    assert (extraction.answer, extraction.method) == (expected, method)


@pytest.mark.parametrize(
    "text, choices, expected, method",
    [
        ("the function is **odd**.\nThe correct choice is (A).", ["odd", "even"], "odd", "choice_letter"),
        ("BF = 4\nTherefore, the value of BF is **(B).**\nI hope this helps!", ["2", "4"], "4", "choice_letter"),
        ("Too low (40) or too high (100).\nTherefore, the count is 80.", ["40", "80", "100"], "80", "last_line"),
        ("The teacher with the most computers is Mr. Watson.", ["Mr. Watson", "Mrs. Tran"], "Mr. Watson", "last_line"),
        ("No, he does not have enough.", ["yes", "no"], "no", "last_line"),
        ("The statement is true.", ["true", "false"], "true", "last_line"),
        ("The solution cannot be provided as there is no context.", ["yes", "no"], None, "refusal"),
        ("If the bars add up, the answer is A (Yes).\nWithout data we cannot say.", ["Yes", "No"], None, "refusal"),
        ("The answer is (B).\nSo x = \\boxed{82}, which is not listed.", ["45", "49", "98"], None, "refusal"),
        ("The correct answer is **(E)**.", ["(c)", "(a)", "(e)", "(d)", "(b)"], "(b)", "choice_letter"),
    ],
)
def test_multiple_choice_in_prose(text, choices, expected, method):
    extraction = extract_answer(text, question_type="multi_choice", choices=choices)
    assert (extraction.answer, extraction.method) == (expected, method)


# The answer phrase as first written; markers.py spells it to open with a character class (faster scans).
_PLAIN_ANSWER_PHRASE = re.compile(
    r"\b(?:answer|choice|option)\s*\**\s*(?:is|:|=|would be|will be|should be)\s*[:*]*[ \t]*(?P<answer>[^\n]+)",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    "text",
    [
        "answer: 5", "The ANSWER IS (B).", "so the Option is C\nand the choice = D", "reanswer is 4", "_answer is 4",
        "x answer is 3", "(answer is 2)", "Answer would be 7, Choice: A", "answers is 1", "éanswer is 9", "a", "",
    ],
)
def test_the_answer_phrase_matches_where_its_plain_spelling_does(text):
    fast = ANSWER_PHRASES[0].pattern
    assert [m.span("answer") for m in fast.finditer(text)] == [m.span("answer") for m in _PLAIN_ANSWER_PHRASE.finditer(text)]


# One response per entry of the marker registry, in its order: the marker alone, then a leaked next turn.
_MARKED = [
    ("<answer>5</answer>", "5"),
    ("So x = \\boxed{5}.", "5"),
    ("The answer is 5.", "5"),
    ("答案是5", "5"),
    ("#### 5", "5"),
    ("A: 5", "5"),
    ("Wednesday is the correct answer.", "Wednesday"),
]


@pytest.mark.parametrize("marker, marked", zip(MARKERS, _MARKED, strict=True), ids=[m.method for m in MARKERS])
def test_each_registered_marker_is_extracted_and_its_opening_ends_the_answer_region(marker, marked):
    text, answer = marked
    continued = f"{text}\nQuestion: What is two plus two?\nThe answer is 4."
    assert (extract_answer(text).answer, extract_answer(text).method) == (answer, marker.method)
    if marker.opening is None:  # no opening: the next turn is not cut, its answer wins
        assert continuation_start(continued) is None
        assert extract_answer(continued).answer == "4"
    else:
        assert continuation_start(continued) == len(text) + 1
        assert extract_answer(continued).answer == answer


def test_a_few_shot_reply_line_does_not_end_the_region_before_its_reasoning():
    text = "A: Let's count.\nHint: count the red ones first.\nThere are 3 red and 2 blue, so the answer is 5."
    assert continuation_start(text) is None
    assert extract_answer(text, answer_type="integer").answer == "5"


def test_the_first_opening_is_built_from_the_registry():
    openings = [marker.opening for marker in MARKERS if marker.opening is not None]
    assert FIRST_OPENING.pattern == "|".join(openings)
    assert len(openings) == len(MARKERS) - 1  # "A:" alone has none
