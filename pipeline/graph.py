"""The curation graph, declared once: each stage, the stage folders its shards read, the global step (an index
over all shards) it needs first, and the set it publishes.

`StageGraph` checks the declaration before any work (every read is written by some step; no cycles) and orders
it; the curate flow only walks `graph.plan(sets)`. Reads are the stages' own declarations (`Stage.inputs`,
`GlobalStep.upstream`), never a second list kept in step by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.decontam.stage import BenchmarkSnapshot, DecontamStage
from pipeline.dedupe.stage import DedupeIndex, DedupeStage
from pipeline.generate.factory import backend_identity, make_backend
from pipeline.generate.rounds import RoundRules
from pipeline.generate.stage import GenerateStage
from pipeline.index import GlobalStep
from pipeline.ingest.stage import IngestStage
from pipeline.score.difficulty import DifficultyStage
from pipeline.score.diversity import ClusterCentroids, DiversityStage
from pipeline.score.problem_type import ProblemTypeStage, TypeClassifier
from pipeline.select.plan import SelectionPlan
from pipeline.select.stage import ColdStartStage, RLStage
from pipeline.stage import Stage

SETS = ("cold_start", "rl")
# Annotation stages whose judgements (duplicate, contaminated) keep a problem from generation and from both sets.
JUDGEMENTS = ("dedupe", "decontam")


class GraphError(ValueError):
    """A mis-wired graph, found before any work."""


@dataclass(frozen=True)
class Step:
    """One per-shard stage of the graph. An indexed step's stage is built once its global step's index exists."""

    name: str  # the stage folder its shards write
    inputs: tuple[str, ...]  # the stage folders its shards read
    build: Callable[[Any], Stage]  # the stage, given its index folder (a Path; None for a step with no index)
    index: GlobalStep | None = None  # built over all shards first, from its own upstream folders
    publishes: str | None = None  # the set ("cold_start", "rl") published from its output

    @classmethod
    def of(cls, stage: Stage) -> Step:
        return cls(stage.name, tuple(stage.inputs), lambda _: stage)

    @classmethod
    def indexed(cls, stage: type[Stage], index: GlobalStep, build: Callable[[Path], Stage], publishes: str | None = None) -> Step:
        return cls(stage.name, tuple(stage.inputs), build, index, publishes)

    @property
    def reads(self) -> tuple[str, ...]:
        """Every stage folder this step needs finished: its shards' inputs and its index's upstream."""
        return tuple(dict.fromkeys(self.inputs + (tuple(self.index.upstream) if self.index else ())))

    def stage(self, index_dir: Path | None) -> Stage:
        stage = self.build(index_dir)
        if stage.name != self.name or tuple(stage.inputs) != self.inputs:
            raise GraphError(f"step {self.name} built stage {stage.name} reading {stage.inputs}, not {self.inputs}")
        return stage


class StageGraph:
    """Steps in an order where each comes after every step it reads; checked when built."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = order(steps)
        self.by_name = {step.name: step for step in self.steps}

    def plan(self, sets: Iterable[str]) -> list[Step]:
        """The steps the given sets need, in order: the set steps and everything they read, transitively."""
        needed: set[str] = set()
        todo = [step.name for step in self.steps if step.publishes in set(sets)]
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo += self.by_name[name].reads
        return [step for step in self.steps if step.name in needed]

    def shards(self) -> list[str]:
        """Every stage's shard names: the source slices of the step that reads nothing (ingest)."""
        ingest = self.steps[0].stage(None)
        if not isinstance(ingest, IngestStage):
            raise GraphError(f"the first step must be ingest, which names the shards, not {ingest.name}")
        return ingest.shards()


def order(steps: Sequence[Step]) -> list[Step]:
    """`steps` topologically sorted (ties keep their declared order); a read nobody writes, a folder written twice, or
    a cycle is a GraphError naming the steps at both ends."""
    writers: dict[str, Step] = {}
    for step in steps:
        if step.name in writers:
            raise GraphError(f"stage folder {step.name!r} is written by two steps")
        writers[step.name] = step
    for step in steps:
        for name in step.reads:
            if name not in writers:
                known = ", ".join(writers)
                raise GraphError(f"stage {step.name} reads {name!r}, which no stage writes (stages: {known})")
    sources = [step.name for step in steps if not step.reads]
    if len(sources) != 1:
        raise GraphError(f"the graph needs exactly one source step (reading nothing) to name the shards, not {sources}")
    ordered: list[Step] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:  # the first declared step that can run next: a valid declaration keeps its order
        ready = next((step for step in pending if all(name in done for name in step.reads)), None)
        if ready is None:
            raise GraphError(f"cycle in the stage graph: {' -> '.join(_cycle(pending))}")
        ordered.append(ready)
        done.add(ready.name)
        pending.remove(ready)
    return ordered


def _cycle(pending: Sequence[Step]) -> list[str]:
    """One cycle among steps that cannot be ordered, as the names along it (first repeated last)."""
    by_name = {step.name: step for step in pending}
    path = [pending[0].name]
    while True:
        following = next(name for name in by_name[path[-1]].reads if name in by_name)
        if following in path:
            return path[path.index(following) :] + [following]
        path.append(following)


def curation_graph(config: RunConfig) -> StageGraph:
    """ingest -> dedupe, decontam (judged before generating: no teacher compute for duplicates or benchmark copies)
    -> generate (verified in rounds) -> difficulty, diversity, problem type -> the cold-start and RL sets."""
    run_dir = config.run_dir
    scores = ("problem_type",)
    return StageGraph(
        [
            Step.of(IngestStage(config.ingest, config.sources, config.data_root)),
            Step.indexed(DedupeStage, DedupeIndex(config.dedupe), functools.partial(DedupeStage, config.dedupe)),
            Step.indexed(
                DecontamStage, BenchmarkSnapshot(config.decontam, config.data_root), functools.partial(DecontamStage, config.decontam)
            ),
            Step.of(
                GenerateStage(
                    config.generate,
                    functools.partial(make_backend, config.backend, config.data_root),
                    backend_identity(config.backend),
                    run_dir,
                    verify=config.verify,
                    rules=RoundRules(config.generate.sampling, config.select, config.score.truncated_rollouts, config.seed),
                    annotation_stages=JUDGEMENTS,
                )
            ),
            Step.of(DifficultyStage(config.score)),
            Step.indexed(DiversityStage, ClusterCentroids(config.diversity), functools.partial(DiversityStage, config.diversity)),
            Step.indexed(
                ProblemTypeStage, TypeClassifier(config.problem_type), functools.partial(ProblemTypeStage, config.problem_type)
            ),
            Step.indexed(
                ColdStartStage,
                SelectionPlan(config.select, "cold_start", JUDGEMENTS + scores, config.seed),
                ColdStartStage,
                publishes="cold_start",
            ),
            Step.indexed(
                RLStage, SelectionPlan(config.select, "rl", JUDGEMENTS + scores + ("diversity",), config.seed), RLStage, publishes="rl"
            ),
        ]
    )
