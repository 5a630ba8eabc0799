"""Why a set came out empty, in words a user can act on, from the counts the run already keeps.

An empty set is a result, not a failure: the card, the log, the skipped trainer exports and the skipped
training all say the same sentence. It is derived from the lineage (each stage's stats) and the selection
plan's drop counts: the first stage that left no rows, else the drop reasons that removed the candidates,
largest first, each explained where the reason has a known remedy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Selection-plan drop reasons (pipeline/select/plan.py, without `dropped_`): what they mean and what to
# change. `{field}`s are `select.*` settings of the run.
EXPLANATIONS = {
    "too_few_rollouts": "no problem has {rl_min_rollouts} or more policy rollouts, so none has a pass rate; "
    "configure `backend.policy` or add rollout recordings (`roles: [rollout]`)",
    "pass_rate_outside_band": "every problem's pass rate is outside ({rl_min_pass_rate}, {rl_max_pass_rate}): "
    "the policy solves each one in all of its rollouts or in none",
    "difficulty_unknown": "no problem has {cold_start_min_rollouts} or more policy rollouts and "
    "`select.cold_start_keep_unknown_difficulty` is off",
    "too_easy_for_policy": "the policy solves every problem above `select.cold_start_max_pass_rate` = {cold_start_max_pass_rate}",
    "too_hard_for_policy": "the policy solves every problem below `select.cold_start_min_pass_rate` = {cold_start_min_pass_rate}",
    "generation_incorrect": "no teacher chain of thought was verified correct",
    "generation_of_ineligible_problem": "the teacher chains of thought are all of problems dropped as duplicates "
    "or benchmark copies",
    "duplicate": "every problem is a duplicate of another",
}
PREFIXES = {
    "contaminated_": "every problem is a copy of a problem of the benchmark {rest} (decontam)",
    "quality_": "every verified teacher chain of thought failed the quality check `{rest}`",
}
# When the plan counted no drop at all, nothing reached it: the role that was missing.
NO_CANDIDATES = {
    "cold_start": "no verified generation is a teacher's chain of thought; configure `backend.teachers` or give "
    "a recording `roles: [teacher]`",
    "rl": "no problem reached selection",
}
KINDS = ("dropped", "skipped", "quarantined")


def explain(reason: str, settings: Mapping[str, Any]) -> str:
    """One drop reason (without `dropped_`) in words; unknown reasons read as their name."""
    if reason in EXPLANATIONS:
        return EXPLANATIONS[reason].format(**settings)
    for prefix, text in PREFIXES.items():
        if reason.startswith(prefix):
            return text.format(rest=reason[len(prefix) :])
    return reason.replace("_", " ")


def _counted(stage: Mapping) -> list[tuple[str, int]]:
    """A stage's non-zero dropped / skipped / quarantined counts, largest first."""
    counts = {k: v for kind in KINDS for k, v in stage.get(kind, {}).items() if v}
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _listing(counts: list[tuple[str, int]]) -> str:
    return ", ".join(f"`{name}`: {count:,}" for name, count in counts)


def empty_set_reason(which: str, lineage: Sequence[Mapping], settings: Mapping[str, Any]) -> str:
    """Why the set `which` ("cold_start" or "rl") has no rows.

    `lineage`: the stats of every stage, in order, the set's own last, its `dropped` holding the selection
    plan's drops. `settings`: the run's `select.*` fields, quoted in the explanations.
    """
    *upstream, selection = lineage
    for stage in upstream:
        if stage["counts"].get("rows_out", 0) == 0:
            counted = _counted(stage)
            why = f" ({_listing(counted)})" if counted else ""
            return f"no rows left after the {stage['stage']} stage{why}"
    drops = [(name.removeprefix("dropped_"), count) for name, count in _counted({"dropped": selection.get("dropped", {})})]
    if not drops:
        return NO_CANDIDATES[which]
    (lead, count), rest = drops[0], drops[1:]
    total = sum(c for _, c in drops)
    others = f"; also dropped: {_listing(rest)}" if rest else ""
    return f"{explain(lead, settings)} (`{lead}`: {count:,} of {total:,} dropped{others})"
