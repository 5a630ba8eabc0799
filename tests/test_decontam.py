"""Decontamination against MathVista testmini (questions only: its images are not shipped)."""

from __future__ import annotations

import json

import pytest
from problem_rows import (
    DATA_ROOT,
    copy_problems,
    problem_row,
    read_stage,
    real_problems,
    write_shard,
)

from pipeline.decontam import (
    BenchmarkConfig,
    BenchmarkSnapshot,
    DecontamConfig,
    DecontamStage,
    decontam_schema,
)
from pipeline.decontam.overlap import answers_agree, ngram_size, resolved_answer
from pipeline.io import StageDir
from pipeline.stage import run_shard

TESTMINI = json.loads((DATA_ROOT / "mathvista" / "testmini.json").read_text())
# Two real TabMWP test problems ARE MathVista testmini items: the same question, the same answer and
# the same table size (329x136 and 153x180) as testmini 265 and 611, whose TabMWP subset was drawn
# from the TabMWP test split that problems_test1k samples too. Flagging them is correct.
REAL_OVERLAPS = {("tabmwp", "17425"): "mathvista_testmini:265", ("tabmwp", "29793"): "mathvista_testmini:611"}
# Six more real TabMWP questions are word for word testmini questions over other tables, with other
# answers ("What is the mean of the numbers?"): different problems, flagged only by text alone.
SAME_TEMPLATE_OTHER_TABLE = {"1566", "9755", "11712", "18704", "23795", "36517"}


def lightly_perturbed(question: str) -> str:
    return "  " + question.lower().replace(" ", "   ").replace(",", "").replace(".", "!") + " ??\n"


@pytest.fixture(scope="module")
def contaminated_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("decontam")
    shards = copy_problems(real_problems(tmp_path_factory), run)
    geometry = TESTMINI["28"]  # "$\overline{AB}$ is a diameter, $AC=8$ inches, ... Find the radius of the circle."
    letter = "ABCD"[geometry["choices"].index(geometry["answer"])]  # the copy gives its answer as a letter
    planted = problem_row(
        lightly_perturbed(geometry["question"]),
        letter,
        source="scraped",
        source_id="planted",
        choices=geometry["choices"],
    )
    return run, shards + [write_shard(run, "scraped-00000", [planted])]


def flagged_rows(run, shards, config: DecontamConfig) -> dict[tuple[str, str], dict]:
    stage = DecontamStage(config, BenchmarkSnapshot(config, DATA_ROOT).prepare(run, []))
    for shard in shards:
        run_shard(stage, run, shard)
    problems = read_stage(run, "problems", shards)
    annotations = read_stage(run, "decontam", shards)
    return {
        (p["source"], p["source_id"]): a for p, a in zip(problems, annotations) if a["contaminated_mathvista_testmini"]
    }


def test_a_planted_testmini_question_is_flagged_and_no_other_real_problem_is(contaminated_run):
    run, shards = contaminated_run
    flagged = flagged_rows(run, shards, DecontamConfig())
    assert flagged[("scraped", "planted")]["contamination_match"] == "mathvista_testmini:28"
    assert flagged[("scraped", "planted")]["contamination_score"] == 1.0
    real = {key: row["contamination_match"] for key, row in flagged.items() if key[0] != "scraped"}
    assert real == REAL_OVERLAPS  # of 1,000 TabMWP + 1,319 GSM8K, only the two true overlaps
    assert sum(StageDir(run, "decontam").marker(s).rows for s in shards) == 1000 + 1319 + 1


def test_text_alone_would_also_flag_same_template_questions_over_other_tables(contaminated_run):
    run, shards = contaminated_run
    flagged = flagged_rows(run, shards, DecontamConfig(check_answer_and_numbers=False))
    assert {sid for source, sid in flagged if source == "tabmwp"} >= SAME_TEMPLATE_OTHER_TABLE | {"17425", "29793"}


def test_a_test_question_pasted_in_a_longer_problem_or_stripped_of_its_choices_is_flagged(tmp_path):
    item = TESTMINI["30"]  # a long UniGeo question: the 13-gram path
    longer = f"Read the figure carefully. {item['question']} Explain each step before you answer."
    shard = write_shard(
        tmp_path,
        "scraped-00000",
        [
            problem_row(longer, item["answer"], choices=item["choices"], source_id="pasted"),
            problem_row(
                longer.replace("35.0", "45.0"), item["answer"], choices=item["choices"], source_id="other-numbers"
            ),
            problem_row(TESTMINI["28"]["question"], TESTMINI["28"]["answer"], source_id="choices-dropped"),
        ],
    )
    flags = read_flags(tmp_path, shard)
    assert flags == [True, False, True]


def read_flags(run, shard) -> list[bool]:
    config = DecontamConfig()
    run_shard(DecontamStage(config, BenchmarkSnapshot(config, DATA_ROOT).prepare(run, [])), run, shard)
    return StageDir(run, "decontam").read(shard).column("contaminated_mathvista_testmini").to_pylist()


def test_benchmarks_are_config_and_the_index_is_reused(tmp_path):
    config = DecontamConfig(
        benchmarks=[
            BenchmarkConfig(name="mathvista_testmini", format="mathvista", path="mathvista/testmini.json"),
            BenchmarkConfig(name="gsm8k_test", format="gsm8k", path="gsm8k/test.jsonl", limit=100),
        ]
    )
    index = BenchmarkSnapshot(config, DATA_ROOT).prepare(tmp_path, [])
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["items"] == {"mathvista_testmini": 1000, "gsm8k_test": 100}
    assert BenchmarkSnapshot(config, DATA_ROOT).prepare(tmp_path, []) == index
    assert decontam_schema(config).names == [
        "problem_id",
        "contaminated_mathvista_testmini",
        "contaminated_gsm8k_test",
        "contamination_score",
        "contamination_match",
    ]
    with pytest.raises(ValueError):
        BenchmarkConfig(name="Math Vista", format="mathvista", path="x")


def test_answers_resolve_letters_and_agree_on_numbers():
    assert resolved_answer("C", ["7.5", "8", "8.5", "17"]) == "8.5"
    assert answers_agree(resolved_answer("145°", None), resolved_answer("145", None))
    assert not answers_agree("shortage", "surplus") and not answers_agree("7", "11")
    assert [ngram_size(t, 13, 6) for t in (20, 13, 12, 6, 5)] == [13, 13, 6, 6, None]
