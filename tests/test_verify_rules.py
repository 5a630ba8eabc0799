"""The false-positive and false-negative classes of issue 15, each on the real-looking response it fixes.

Cases are modelled on recorded responses (MathVista, MATH-V in shared/data); rules are general classes.
"""

import pytest

from pipeline.verify import check_cot_quality, extract_answer, judge_response
from pipeline.verify.equivalence import looks_irrational
from pipeline.verify.evaluate import numeric_value
from pipeline.verify.extract import continuation_start

ANGLES = ["$720^{\\circ}$", "$600^{\\circ}$", "$1080^{\\circ}$", "$360^{\\circ}$", "$300^{\\circ}$"]


def judge(text, gold, **spec):
    return judge_response(text, gold=gold, **spec)


# --- runaway continuations: the answer to THIS question ----------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # few-shot leakage: the model answers, then writes the next exemplar and answers that too
        ("Each box holds 4, so 3 boxes hold 12.\nThe answer is 12.\n\nQuestion: Tom has 9 pens and loses 2. "
         "How many are left?\nAnswer: 9 - 2 = 7. The answer is 7.", "12"),
        ("So x = \\boxed{3}<|im_end|>\n<|im_start|>user\nNow solve 2x = 10.<|im_end|>\n<|im_start|>assistant\n"
         "x = \\boxed{5}", "3"),
        # a switch of script after the answer: the continuation reconsiders in another language
        ("所以，答案是 24。\n\nHowever, let me reconsider the whole problem carefully because the figure might show "
         "something else entirely. The answer is 30.", "24"),
    ],
)
def test_the_verdict_comes_from_the_answer_to_this_question(text, expected):
    assert extract_answer(text, answer_type="integer").answer == expected


def test_an_english_answer_continued_in_chinese_keeps_its_option():
    text = "The answer is (B).\n\n然而，我们重新考虑一下这个问题，图中的角度应该是六十度，因为两条直线平行，所以答案是 (C)。"
    assert extract_answer(text, question_type="multi_choice", choices=["30°", "45°", "60°"]).answer == "45°"


def test_restating_the_question_before_answering_is_no_continuation():
    text = "Question: what is 3 + 4?\nWe add: 3 + 4 = 7.\nThe answer is 7."
    assert continuation_start(text) is None
    assert extract_answer(text, answer_type="integer").answer == "7"


def test_quality_flags_a_response_that_continues_past_its_answer():
    leaked = "Adding the two prices gives 12 dollars in total.\nThe answer is 12.\n\nQuestion: What is 9 - 2?\nAnswer: 7"
    assert check_cot_quality(leaked).reason == "continues_past_answer"
    assert check_cot_quality("Adding the two prices gives 12 dollars in total.\nThe answer is 12.").ok


# --- letter and value disagree --------------------------------------------------------------------------


def test_a_letter_written_with_another_options_value_is_not_correct():
    # the case: "the answer is (B) 35°" where option B is 55°
    choices = ["35°", "55°", "65°", "75°"]
    verdict = judge("So ∠2 = 180° - 145° = 35°.\nThe answer is (B) 35°.", "55°", question_type="multi_choice", choices=choices)
    assert (verdict.correct, verdict.reason) == (False, "conflicting_answers")
    assert judge("So ∠2 = 55°.\nThe answer is (B) 55°.", "55°", question_type="multi_choice", choices=choices).correct


def test_a_box_and_the_letter_after_it_must_agree():
    # InternLM-XComposer2 on MATH-V: a boxed value, then "The answer is:" with a letter that is another value
    text = "the sum of the six marked angles is $3 \\times 180^{\\circ} = \\boxed{540^{\\circ}}$.The answer is: (C)"
    verdict = judge(text, "C", question_type="multi_choice", choices=ANGLES)
    assert (verdict.correct, verdict.reason) == (False, "conflicting_answers")
    agreeing = "so the sum is $\\boxed{1080^{\\circ}}$.The answer is: (C)"
    assert judge(agreeing, "C", question_type="multi_choice", choices=ANGLES).correct


def test_two_different_final_answers_are_not_correct():
    # Qwen-VL-Max on MATH-V: "So the answer is 4." and at once "The correct answer is (A) only 5."
    choices = ["only 5", "only 2", "either 2 or 5"]
    text = "the missing number must be 4 - 0 = 4.\nSo the answer is 4.\nThe correct answer is (A) only 5."
    assert judge(text, "A", question_type="multi_choice", choices=choices).reason == "conflicting_answers"
    # a free-form box followed by a different "The answer is:" line
    boxed = "the volume is $\\boxed{\\frac{\\sqrt{3}-1}{2}}$.The answer is: 5"
    assert judge(boxed, "5", answer_type="integer").reason == "conflicting_answers"


def test_boxed_intermediate_results_and_revisions_are_no_conflict():
    steps = "Path 1: \\boxed{1} tree.\nPath 2: \\boxed{1} tree.\nAdding these up, a total of \\boxed{3} trees."
    assert judge(steps, "3", answer_type="integer").correct
    revised = "The answer is (D).\n" + "Let me check each vertex again. " * 10 + "\nSo the final answer is 1080°."
    assert judge(revised, "C", question_type="multi_choice", choices=ANGLES).correct


# --- explicit non-answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "From the figure the answer is (B).\nBut then ∠1 - ∠2 = 58° - 32° = 26°, which is not among the options.",
        "所以∠FAE＝180°-∠AED＝110°，所以这个选择题没有正确答案。",
        "The angle is 26°. None of the choices match, so the question may contain an error.",
    ],
)
def test_a_non_answer_picks_up_no_option_from_the_reasoning(text):
    choices = ["28°", "30°", "32°", "58°"]
    extraction = extract_answer(text, question_type="multi_choice", choices=choices)
    assert (extraction.answer, extraction.method) == (None, "refusal")
    assert not judge(text, "30°", question_type="multi_choice", choices=choices).correct


def test_an_option_that_says_none_is_still_an_answer():
    choices = ["3", "4", "5", "none of the above"]
    assert extract_answer("The answer is (D) none of the above.", question_type="multi_choice", choices=choices).answer == (
        "none of the above"
    )


# --- every option answered / several answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The possible arrangements are (A), (B), (C), (D), and (E). Therefore, the answer is \\boxed{(A),(B),(C),(D),(E)}.",
        "(C) Leo has an axis of symmetry.\n(E) Capricorn has an axis of symmetry.\nThe correct answer is (A), (C), and (E).",
        "The answer is \\boxed{(A) and (B)}.",
        "(A) and (D)\n\n(A) 1, 6, 7, 8\n(D) 1, 2, 3, 4, 5",
    ],
)
def test_several_options_at_once_are_no_answer(text):
    choices = ["A", "B", "C", "D", "E"]
    extraction = extract_answer(text, question_type="multi_choice", choices=choices)
    assert (extraction.answer, extraction.method) == (None, "several_answers")
    assert not judge(text, "A", question_type="multi_choice", choices=choices).correct


def test_an_option_whose_text_names_several_things_is_one_answer():
    choices = ["P and R", "Q and S", "only R"]
    assert extract_answer("The correct answer is (A) P and R.", question_type="multi_choice", choices=choices).answer == "P and R"


# --- numbers inside formulas ---------------------------------------------------------------------------------


def test_a_coefficient_or_an_operand_is_not_the_answer():
    assert not judge("24π", "24", answer_type="integer").correct  # Qwen-VL-Max on MATH-V
    text = "we cannot provide a specific number.\nTherefore, the total of the four numbers is **158 + LK**."
    assert not judge(text, "158", answer_type="integer").correct


def test_a_number_option_is_not_named_from_inside_a_formula():
    choices = ["$3 - \\frac{\\pi}{2}$", "$\\frac{\\pi}{2}$", "$2$", "$\\frac{3\\pi}{4}$", "$1+\\frac{\\pi}{2}$"]
    text = "the area is $\\pi - \\pi - \\pi = \\boxed{-2\\pi}$.The answer is: -2\\pi"
    assert not judge(text, "C", question_type="multi_choice", choices=choices).correct
    options = ["$25$", "$10 + 5\\pi$", "$50$", "$50 + 5\\pi$", "$25\\pi$"]
    verdict = judge("so the area is $\\boxed{50+5\\pi}$.\nThe answer is: 50+5\\pi", "D", question_type="multi_choice", choices=options)
    assert verdict.correct and verdict.extracted == "$50 + 5\\pi$"


ONE_TO_FIVE = ["$1$", "$2$", "$3$", "$4$", "$5$"]


@pytest.mark.parametrize(
    "text, gold, choices",
    [
        # a coefficient, spaced from what it multiplies: "2" is not chosen by $2 \sqrt{3}$, 2 √3 or 2(√3-1)
        ("The height of the triangle is $2 \\sqrt{3}$.\nTherefore, the answer is $2 \\sqrt{3}$.", "B", ONE_TO_FIVE),
        ("So the side length is $\\boxed{2 \\sqrt{3}}$.", "B", ONE_TO_FIVE),
        ("The answer is: 2 √3", "B", ONE_TO_FIVE),
        ("Hence $AB = \\boxed{2(\\sqrt{3}-1)}$.", "B", ONE_TO_FIVE),
        # an operand after a spaced operator: "5" is not chosen by 3 + 5, 7 - 5, x \times 5 or the ratio 3:5
        ("The number of squares is $\\boxed{3 + 5}$.", "E", ONE_TO_FIVE),
        ("The answer is $7 - 5$.", "E", ONE_TO_FIVE),
        ("Thus the answer is $x \\times 5$.", "E", ONE_TO_FIVE),
        ("The ratio of the areas is $\\boxed{3:5}$.", "E", ONE_TO_FIVE),
        # the tail of a longer number, and a value with units that is multiplied
        ("The answer is \\boxed{10,404}", "B", ["$396$", "$404$", "$800$", "$10,000$", "$1,204$"]),
        ("The perimeter is $\\boxed{20 \\mathrm{~cm} \\times 2}$.", "B", ["$10 \\mathrm{~cm}$", "$20 \\mathrm{~cm}$", "$30 \\mathrm{~cm}$"]),
    ],
)
def test_a_number_option_inside_a_longer_final_expression_is_not_chosen(text, gold, choices):
    assert not judge(text, gold, question_type="multi_choice", choices=choices).correct


@pytest.mark.parametrize(
    "text, gold, choices",
    [
        ("So $x = 5$. The answer is $x = 5$.", "E", ONE_TO_FIVE),
        ("The answer is 5 cm.", "E", ONE_TO_FIVE),
        ("So 12 - 7 = 5, and the answer is 5.", "E", ONE_TO_FIVE),
        ("Therefore the answer is $\\boxed{404}$.", "B", ["$396$", "$404$", "$800$", "$10,000$", "$1,204$"]),
        ("Thus the area is $\\boxed{20 \\mathrm{~cm}^{2}}$.", "B", ["$10 \\mathrm{~cm}^{2}$", "$20 \\mathrm{~cm}^{2}$"]),
    ],
)
def test_a_number_option_stated_alone_or_with_its_unit_is_still_chosen(text, gold, choices):
    assert judge(text, gold, question_type="multi_choice", choices=choices).correct


# --- false negatives on free text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, gold, spec",
    [
        ("Yes, it is.", "Yes", {"answer_type": "boolean"}),
        ("No. The blue bar is lower than the red one.", "no", {"answer_type": "text"}),
        ("The red block.", "Red", {"question_type": "multi_choice", "choices": ["Red", "Blue"]}),
        ("1:1", "E", {"question_type": "multi_choice", "choices": ["$1: 2$", "$2: 3$", "$2: 1$", "$3: 2$", "$1: 1$"]}),
        ("2$\\sqrt{10}$", "A", {"question_type": "multi_choice", "choices": ["$2\\sqrt{10}$", "$11$", "$6$"]}),
        ("\\boxed{2+2\\sqrt{2}}", "C", {"question_type": "multi_choice", "choices": ["$2 \\sqrt{5}$", "6", "$2+2 \\sqrt{2}$"]}),
        ("$\\frac{8}{15}\\sqrt{5}$. The answer is \\boxed{D.", "D", {"question_type": "multi_choice", "choices": list("ABCDE")}),
        ("The answer is \\textbf{(A)}.", "A", {"question_type": "multi_choice", "choices": list("ABCDE")}),
        ("The dance performance begins at 10:15 A.M.", "10:15 A.M.", {"question_type": "multi_choice", "choices": ["2:50 P.M.", "10:15 A.M."]}),
    ],
)
def test_short_informal_answers_are_read(text, gold, spec):
    assert judge(text, gold, **spec).correct


def test_a_comparison_naming_both_options_is_left_to_a_judge_model():
    extraction = extract_answer("The red block is taller than the blue one.", question_type="multi_choice", choices=["Red", "Blue"])
    assert (extraction.answer, extraction.method) == (None, "none")


# --- values of plain expressions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("\\frac{3\\sqrt{6}}{2}", 3 * 6**0.5 / 2),
        ("$5(\\sqrt{5}-2)$", 5 * (5**0.5 - 2)),
        ("$\\frac{7^3}{2^{12} 13^2}$", 7**3 / (2**12 * 13**2)),
        ("3\\cdot 2^{5}", 96.0),
        ("\\sqrt[3]{8}", 2.0),
        ("8:5", 1.6),
    ],
)
def test_numeric_value_of_plain_expressions(text, value):
    assert numeric_value(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["x+1", "\\sin x", "2^{100000}", "\\frac{1}{0}", "(" * 100 + "1" + ")" * 100])
def test_no_value_for_anything_else(text):
    assert numeric_value(text) is None


def test_rational_numbers_are_never_equal_to_multiples_of_pi_or_roots():
    assert looks_irrational("8-2\\pi") and looks_irrational("3\\sqrt{3}") and not looks_irrational("\\sqrt{25}")
    assert not judge("\\boxed{4}", "22+12\\sqrt{2}", answer_type="expression").correct
