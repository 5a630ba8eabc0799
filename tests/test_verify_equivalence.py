"""Fast-path equivalence and normalisation (pure functions, no worker processes)."""

from fractions import Fraction

import pytest

from pipeline.verify.equivalence import decide_fast, fits_math_verify, math_verify_equal
from pipeline.verify.model import AnswerSpec
from pipeline.verify.normalize import canonical_boolean, normalize_text, parse_number


def decide(pred, gold, **spec):
    return decide_fast(pred, AnswerSpec.of(gold, **spec))


@pytest.mark.parametrize(
    "text, value",
    [
        ("22,600", 22600),
        ("$4.50", Fraction(9, 2)),
        ("-3/4", Fraction(-3, 4)),
        ("−2", -2),
        (r"\$1,200.5", Fraction(24010, 20)),
        ("1.2e3", 1200),
        ("5 cm", 5),
        (r"90^\circ", 90),
        (r"\text{12 apples}", 12),
        (r"\frac{3}{4}", Fraction(3, 4)),
        ("$-5$", -5),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text).value == value


@pytest.mark.parametrize("text", ["2 and 3", "x+1", "1,2", "", "1/0", "1" * 1000])
def test_not_a_plain_number(text):
    assert parse_number(text) is None


def test_the_problem_unit_is_stripped_at_either_end():
    assert parse_number("12 cm^2", "cm^2").value == 12
    assert parse_number("$-3", "$").value == -3


def test_normalize_text_and_booleans():
    assert normalize_text("  **Yes.** ") == "yes"
    assert normalize_text(r"$\text{Tokyo}$") == "tokyo"
    assert normalize_text("(a)(b)") == "(a)(b)"
    assert canonical_boolean("True") == "yes" and canonical_boolean("no.") == "no"


@pytest.mark.parametrize(
    "pred, gold, spec, reason",
    [
        ("22,600", "22600", {"answer_type": "integer"}, "numeric"),
        ("$13.00", "13", {"answer_type": "float"}, "numeric"),
        ("3/4", "0.75", {"answer_type": "float"}, "fraction"),
        ("6/8", "3/4", {"answer_type": "fraction"}, "numeric"),
        ("75%", "0.75", {"answer_type": "float"}, "percent"),
        ("0.75", "75%", {"answer_type": "text"}, "percent"),
        ("1.23", "1.2", {"answer_type": "float", "precision": 1}, "numeric_precision"),
        ("1/3", "0.333", {"answer_type": "float"}, "fraction"),
        ("0.1786", "5/28", {"answer_type": "float"}, "fraction"),
        ("250 g", "250", {"answer_type": "integer", "unit": "g"}, "numeric"),
        ("5 cm", "5", {"answer_type": "integer"}, "numeric"),
        ("Yes", "yes", {"answer_type": "boolean"}, "exact"),
        ("true", "Yes", {"answer_type": "boolean"}, "exact"),
        ("Tokyo.", "tokyo", {}, "exact"),
        ("[1, 2.50]", "[1, 2.5]", {"answer_type": "list"}, "list"),
        ("(B) 5cm", "5cm", {"question_type": "multi_choice", "choices": ["3cm", "5cm"]}, "choice"),
        ("5cm", "B", {"question_type": "multi_choice", "choices": ["3cm", "5cm"]}, "choice"),
    ],
)
def test_equivalent_answers(pred, gold, spec, reason):
    assert decide(pred, gold, **spec) == (True, reason)


@pytest.mark.parametrize(
    "pred, gold, spec",
    [
        ("1.3", "1.2", {"answer_type": "float", "precision": 1}),
        ("1.2", "1.25", {"answer_type": "float", "precision": 2}),
        ("12.4", "12", {"answer_type": "integer"}),
        ("0.3", "0.33", {"answer_type": "float"}),
        ("0.15", "19/124", {"answer_type": "float"}),  # too coarse to claim 0.1532...
        ("0.4662", "48/103", {"answer_type": "float"}),  # 0.46602 rounds to 0.4660
        ("no", "yes", {"answer_type": "boolean"}),
        ("surplus", "shortage", {"question_type": "multi_choice", "choices": ["shortage", "surplus"]}),
        ("(A)", "5cm", {"question_type": "multi_choice", "choices": ["3cm", "5cm"]}),
        ("Osaka", "Tokyo", {}),
        ("[2, 1]", "[1, 2]", {"answer_type": "list"}),
    ],
)
def test_different_answers(pred, gold, spec):
    assert decide(pred, gold, **spec) == (False, "mismatch")


def test_unanswered_and_oversized_answers_get_explicit_reasons():
    assert decide(None, "1") == (False, "no_answer")
    assert decide("  ", "1") == (False, "no_answer")
    assert decide("9" * 10**6, "9", answer_type="integer") == (False, "answer_too_long")
    nested = r"\frac{" * 50 + "1" + "}{2}" * 50
    assert not fits_math_verify(nested)
    assert decide(nested, r"\frac{1}{2}", answer_type="expression") == (False, "answer_too_complex")


def test_math_notation_is_left_to_math_verify():
    assert decide(r"\sqrt{8}", r"2\sqrt{2}", answer_type="expression") is None
    assert decide(r"\frac{3}{2^2}", "0.75", answer_type="float") is None


def test_math_verify_equal_in_process():
    # the worker function itself; here on the main thread, its internal timeouts are off anyway
    assert math_verify_equal(r"\frac{3}{4}", "0.75")
    assert math_verify_equal(r"\sqrt{8}", r"2\sqrt{2}")
    assert not math_verify_equal(r"\sqrt{8}", "3")


@pytest.mark.parametrize("pred", ["(D)", "\\textbf{(C)}", "$$ (D) $$", "(E)} }$$", "x"])
def test_a_lone_letter_for_a_number_is_decided_without_math_verify(pred):
    # Gemini-Pro-CoT on MATH-V free-form questions: "... so the answer is (D)" where the gold is 32
    assert decide(pred, "32", answer_type="integer") == (False, "mismatch")
    assert not math_verify_equal(pred, "32")  # what math-verify would have said


@pytest.mark.parametrize("pred", ["\\ln e", "(E) None of the above", "\\text{ (D) }12."])
def test_more_than_a_lone_letter_is_left_to_math_verify(pred):
    assert decide(pred, "1", answer_type="integer") is None  # "\\ln e" is 1


@pytest.mark.parametrize("pred, gold", [("not 9:00 P.M.", "9:00 P.M."), ("$x \\neq 3$, so never x = 3", "x = 3"), ("it isn't 2/7", "2/7")])
def test_an_answer_that_denies_the_gold_is_wrong_without_math_verify(pred, gold):
    assert decide(pred, gold) == (False, "mismatch")
    assert decide("not parallel", "not parallel") == (True, "exact")  # a gold that denies too is compared as usual

