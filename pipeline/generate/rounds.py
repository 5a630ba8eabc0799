"""Sampling decided per problem, in rounds: the rules, as pure functions of a problem's counts.

Within a shard, generation proceeds in rounds; after each round the new replies are verified and these rules decide
what each problem needs next (pipeline/generate/stage.py runs them):
- policy rollouts first, until every decision selection takes on them is settled: until no outcome of the rollouts
  still possible up to k could change it (curtailed sampling). One correct and one wrong reply settle 0 < p < 1;
  enough wrong replies settle p <= `select.cold_start_max_pass_rate`. Problems nobody solves need all k to prove it.
- teachers only for problems selection can keep (not a duplicate, not contaminated, inside the difficulty band as
  the rollouts decided it), until `target_verified` verified, quality-checked chains of thought or `n_samples`.
`mode: fixed` asks every sample in one round, as sampling always did.

Selection reads the pass rate from the rollouts a problem got (`num_correct / num_rollouts`); a rollout rule only
stops where that estimate and every possible full-k outcome give selection the same decisions, so the decisions
are exactly those of fixed k. The estimate itself comes from fewer rollouts: benchmarks/bench_adaptive.py reports
its difference from the fixed-k one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationRequest
from pipeline.score.difficulty import rollout_outcome
from pipeline.select.plan import ROLLOUT_DECISION_FIELDS, SelectConfig, rollout_decisions

# What selection decides from (correct, counted) rollouts; rollouts stop once it can no longer change.
Decide = Callable[[int, int], Hashable]


class SamplingConfig(StrictConfig):
    mode: Literal["adaptive", "fixed"] = "adaptive"
    min_rollouts: int = Field(2, ge=1)  # every problem gets at least these (up to k) before its rollouts may stop
    # Verified, quality-checked chains of thought a problem needs from its teachers; None: as many as the cold-start
    # set keeps per problem (`select.cold_start_max_per_problem`).
    target_verified: int | None = Field(None, ge=1)


def completions(correct: int, counted: int, remaining: int, may_not_count: bool) -> Iterator[tuple[int, int]]:
    """Every (correct, counted) the problem can end with after `remaining` more rollouts; a rollout that may not count
    (a truncated reply, where truncation is excluded from the pass rate) can leave `counted` short."""
    for right in range(remaining + 1):
        for wrong in range(remaining - right + 1) if may_not_count else (remaining - right,):
            yield correct + right, counted + right + wrong


def settled(correct: int, counted: int, remaining: int, decide: Decide, may_not_count: bool = False) -> bool:
    """Whether stopping now gives selection the decisions it would take after any outcome of the remaining rollouts."""
    now = decide(correct, counted)
    return all(decide(c, n) == now for c, n in completions(correct, counted, remaining, may_not_count))


def rollouts_to_request(
    correct: int, counted: int, sent: int, k: int, min_rollouts: int, decide: Decide, may_not_count: bool = False
) -> int:
    """How many more rollouts to ask for now: up to the minimum first, then none once settled, else the fewest after
    which some outcome could settle it (usually one: a round never asks for a rollout that cannot matter)."""
    remaining = k - sent
    if remaining <= 0:
        return 0
    if sent < min_rollouts:
        return min(min_rollouts, k) - sent
    if settled(correct, counted, remaining, decide, may_not_count):
        return 0
    for more in range(1, remaining):
        outcomes = completions(correct, counted, more, may_not_count)
        if any(settled(c, n, remaining - more, decide, may_not_count) for c, n in outcomes):
            return more
    return remaining


def teachers_to_request(verified: int, sent: int, available: int, target: int) -> int:
    """Teacher samples to ask for now: the verified chains of thought still missing, as far as samples remain."""
    return max(0, min(target - verified, available - sent))


@dataclass(frozen=True)
class RoundRules:
    """What the rounds take from the run's config: the sampling mode and minimum, selection's decisions (its
    `select` config), and whether a truncated rollout counts (`score.truncated_rollouts`)."""

    sampling: SamplingConfig
    select: SelectConfig
    truncated_rollouts: str = "wrong"
    seed: int = 0  # orders replayed recordings (GenerationBackend.sampling_order)

    @property
    def adaptive(self) -> bool:
        return self.sampling.mode == "adaptive"

    @property
    def may_not_count(self) -> bool:
        return self.truncated_rollouts == "excluded"

    @property
    def target_verified(self) -> int:
        return self.sampling.target_verified or self.select.cold_start_max_per_problem

    def decide(self, correct: int, counted: int) -> tuple[str | None, str | None]:
        return rollout_decisions(correct, counted, self.select)

    def identity(self) -> dict:
        """What decides which samples are asked: fixed sampling asks all of them, whatever selection's settings."""
        if not self.adaptive:
            return {"mode": "fixed"}
        decisions = {name: getattr(self.select, name) for name in ROLLOUT_DECISION_FIELDS}
        return {"min_rollouts": self.sampling.min_rollouts, "target_verified": self.target_verified, "decisions": decisions,
                "truncated_rollouts": self.truncated_rollouts, "seed": self.seed}  # fmt: skip


@dataclass
class ProblemRounds:
    """One problem's samples by role, in sampling order, and what its judged replies have shown so far."""

    rollouts: list[GenerationRequest]
    teachers: list[GenerationRequest]
    rollouts_sent: int = 0
    correct: int = 0  # right rollouts
    counted: int = 0  # rollouts that count in the pass rate
    teachers_sent: int = 0
    verified: int = 0  # right, quality-checked teacher chains of thought

    def next_requests(self, rules: RoundRules) -> list[GenerationRequest]:
        """This round's requests: every sample at once under fixed sampling; else rollouts until selection's decisions
        are settled, then (where selection can keep the problem's CoTs) teachers until `target_verified`."""
        if not rules.adaptive:
            return self._take_rollouts(len(self.rollouts)) + self._take_teachers(len(self.teachers))
        more = rollouts_to_request(
            self.correct, self.counted, self.rollouts_sent, len(self.rollouts), rules.sampling.min_rollouts, rules.decide, rules.may_not_count
        )
        if more:
            return self._take_rollouts(more)
        if self.teacher_verdict(rules) is not None:
            return []
        return self._take_teachers(teachers_to_request(self.verified, self.teachers_sent, len(self.teachers), rules.target_verified))

    def teacher_verdict(self, rules: RoundRules) -> str | None:
        """Why selection would drop this problem's chains of thought by its rollouts (None: teachers are worth asking)."""
        return rules.decide(self.correct, self.counted)[0]

    def record(self, row: Mapping, rules: RoundRules) -> None:
        """Fold one judged reply in."""
        if row["role"] == "teacher":
            self.verified += bool(row["correct"] and row["quality_ok"])
        elif (outcome := rollout_outcome(row, rules.truncated_rollouts)) is not None:
            self.correct += outcome
            self.counted += 1

    def _take_rollouts(self, n: int) -> list[GenerationRequest]:
        taken = self.rollouts[self.rollouts_sent : self.rollouts_sent + n]
        self.rollouts_sent += len(taken)
        return taken

    def _take_teachers(self, n: int) -> list[GenerationRequest]:
        taken = self.teachers[self.teachers_sent : self.teachers_sent + n]
        self.teachers_sent += len(taken)
        return taken
