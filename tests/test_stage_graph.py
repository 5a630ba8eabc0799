"""The curation graph is declared once and checked before any work: a read that no stage writes, or a cycle, fails
at start-up naming both ends; the flow runs the declared order."""

from __future__ import annotations

import dataclasses

import pytest

import flows.curate
from pipeline.config import load_config
from pipeline.graph import GraphError, StageGraph, Step, curation_graph


@pytest.fixture(scope="module")
def graph() -> StageGraph:
    return curation_graph(load_config(None, ["train.mode=none"]))


def test_the_default_graph_runs_in_its_declared_order_and_every_read_comes_from_an_earlier_stage(graph):
    names = [step.name for step in graph.steps]
    assert names == ["problems", "dedupe", "decontam", "generations", "difficulty", "diversity", "problem_type", "cold_start", "rl"]
    for position, step in enumerate(graph.steps):
        assert set(step.reads) <= set(names[:position]), step.name
    assert {step.publishes for step in graph.steps} == {None, "cold_start", "rl"}
    # judgements keep duplicates and benchmark copies from generation: generation reads them
    assert {"dedupe", "decontam"} <= set(graph.by_name["generations"].reads)


def test_a_set_plans_only_the_steps_it_reads_transitively(graph):
    cold_start = [step.name for step in graph.plan(["cold_start"])]
    assert "rl" not in cold_start and cold_start[-1] == "cold_start"
    assert [step.name for step in graph.plan(["cold_start", "rl"])] == [step.name for step in graph.steps]
    lone = StageGraph([graph.by_name["problems"], dataclasses.replace(graph.by_name["difficulty"], inputs=("problems",), publishes="rl")])
    assert [step.name for step in lone.plan(["rl"])] == ["problems", "difficulty"]


def test_a_stage_reading_an_output_nothing_writes_fails_naming_both(graph):
    steps = list(graph.steps)
    steps[4] = dataclasses.replace(steps[4], inputs=("problems", "generatoins"))  # difficulty, misspelling its input
    with pytest.raises(GraphError, match=r"stage difficulty reads 'generatoins', which no stage writes"):
        StageGraph(steps)


def test_a_cycle_fails_naming_the_stages_along_it(graph):
    steps = list(graph.steps)
    steps[3] = dataclasses.replace(steps[3], inputs=(*steps[3].inputs, "difficulty"))  # generation reading its own outcome
    with pytest.raises(GraphError, match=r"cycle in the stage graph: generations -> difficulty -> generations"):
        StageGraph(steps)


def test_declaring_out_of_order_still_runs_each_step_after_what_it_reads(graph):
    shuffled = [graph.steps[0], *reversed(graph.steps[1:])]
    assert [step.name for step in StageGraph(shuffled).steps] != [step.name for step in shuffled]
    for position, step in enumerate(ordered := StageGraph(shuffled).steps):
        assert set(step.reads) <= {s.name for s in ordered[:position]}


def test_two_writers_of_one_folder_or_two_sources_are_errors(graph):
    with pytest.raises(GraphError, match="'difficulty' is written by two steps"):
        StageGraph([*graph.steps, graph.by_name["difficulty"]])
    with pytest.raises(GraphError, match=r"exactly one source step .* not \['problems', 'more_problems'\]"):
        StageGraph([*graph.steps, dataclasses.replace(graph.by_name["problems"], name="more_problems")])


def test_a_built_stage_that_disagrees_with_its_step_is_refused(graph):
    difficulty = graph.by_name["difficulty"]
    wrong = Step(difficulty.name, ("problems",), difficulty.build)
    with pytest.raises(GraphError, match="built stage difficulty reading"):
        wrong.stage(None)


def test_the_flow_fails_at_start_up_on_a_miswired_graph_before_any_work(tmp_path, monkeypatch, prefect_harness):
    def miswired(config):
        steps = list(curation_graph(config).steps)
        steps[4] = dataclasses.replace(steps[4], inputs=("problems", "generatoins"))
        return StageGraph(steps)

    monkeypatch.setattr(flows.curate, "curation_graph", miswired)
    with pytest.raises(GraphError, match="stage difficulty reads 'generatoins'"):
        flows.curate.curate(target="all", overrides=[f"runs_root={tmp_path}", "run_name=miswired", "train.mode=none"])
    assert not (tmp_path / "miswired").exists()  # nothing ingested, not even the resolved config written
