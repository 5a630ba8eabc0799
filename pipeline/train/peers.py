"""VAS's peers as sampling rules for the same TRL trainer: DAPO dynamic sampling and GRESO pre-rollout skipping.

DAPO dynamic sampling (Yu et al. 2025; verl's `algorithm.filter_groups`): roll out a batch, drop the groups whose
accuracy rewards are all equal (their GRPO advantage is zero), draw and roll out more prompts until the batch holds
`batch` informative groups, keep the first `batch`. Every rollout generated counts as cost, dropped ones included.

GRESO (Zheng et al. 2025, "Act Only When It Pays", github.com/Infini-AI-Lab/GRESO `all_probabilistic`): before
rollout, skip a prompt whose last z observations were all zero-variance with probability
    P(skip) = 1 - max(p ** z, 0.01)
where p = p_easy if that streak is all-correct groups and p_hard if all-wrong (z = 0: never skipped). After each
training step (from the second epoch on), each p moves by 0.01 toward a target share of zero-variance groups among
the groups rolled out in that step: easy groups' share >= target/3 -> p_easy -= 0.01 (skip more), else += 0.01;
hard groups' share >= 2 target/3 -> p_hard -= 0.01, else += 0.01 (target 0.25, p kept in [0.05, 0.95], both start
at 0.5: the paper's scripts). GRESO runs on top of dynamic sampling, which fills the batch after rollout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Streak = Literal["easy", "hard"]


def is_informative(rewards: Sequence[float], tolerance: float = 1e-9) -> bool:
    """A group teaches GRPO something only if its rewards are not all equal."""
    return len(rewards) > 0 and max(rewards) - min(rewards) > tolerance


@dataclass(frozen=True)
class DynamicSamplingConfig:
    max_rounds: int = 8  # rollout rounds per step (the first batch + refills); verl's max_num_gen_batches


def dynamic_sampling_selection(rounds: Sequence[Sequence[bool]], batch: int) -> list[tuple[int, int]]:
    """Which (round, group) pairs make the trained batch: the first `batch` informative groups in rollout order.

    If the rounds ran out first, the batch is completed with the earliest zero-variance groups (they add no
    gradient, only keep the batch shape), so the result always has `batch` entries when enough groups exist."""
    informative = [(r, g) for r, flags in enumerate(rounds) for g, flag in enumerate(flags) if flag]
    if len(informative) >= batch:
        return informative[:batch]
    filler = [(r, g) for r, flags in enumerate(rounds) for g, flag in enumerate(flags) if not flag]
    return sorted(informative + filler[: batch - len(informative)])


def _pad_value(key: str, pad_token_id: int) -> int:
    """What TRL pads each per-row tensor with: token ids with the pad token, the tool mask with 1, the rest 0."""
    return pad_token_id if key.endswith("_ids") else 1 if key == "tool_mask" else 0


def concat_rollout_rows(outputs: Sequence[Mapping], rows: Sequence[tuple[int, int]], pad_token_id: int) -> dict:
    """The rows `(output, row)` of several TRL rollout batches as one batch: per-row tensors selected and re-padded
    (prompt side on the left, completion side on the right, as TRL pads them), `num_items_in_batch` recounted."""
    import torch  # here: configs import this module, and importing torch takes seconds

    first = outputs[0]
    merged: dict = {}
    for key, value in first.items():
        if key == "num_items_in_batch" or value is None:
            continue
        if not (isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == first["prompt_ids"].shape[0]):
            raise ValueError(f"dynamic sampling supports text rollouts only; cannot merge {key!r}")
        parts = [outputs[o][key][r] for o, r in rows]
        if value.ndim == 1:
            merged[key] = torch.stack(parts)
            continue
        width = max(part.shape[0] for part in parts)
        rows_out = value.new_full((len(parts), width, *value.shape[2:]), _pad_value(key, pad_token_id))
        for i, part in enumerate(parts):
            if key.startswith("prompt"):
                rows_out[i, width - part.shape[0] :] = part  # left padding: the prompt ends where generation began
            else:
                rows_out[i, : part.shape[0]] = part
        merged[key] = rows_out
    loss_mask = merged["completion_mask"] * merged["tool_mask"] if "tool_mask" in merged else merged["completion_mask"]
    merged["num_items_in_batch"] = loss_mask.sum()
    return merged


@dataclass(frozen=True)
class GRESOConfig:
    p_easy: float = 0.5  # starting exploration probabilities (the paper's scripts)
    p_hard: float = 0.5
    target_zero_variance: float = 0.25  # easy groups aim at a third of it, hard at two thirds
    adjust_step: float = 0.01
    p_min: float = 0.05
    p_max: float = 0.95
    min_keep: float = 0.01  # a prompt is never skipped with certainty


def greso_skip_probability(streak: Streak | None, length: int, p_easy: float, p_hard: float, min_keep: float = 0.01) -> float:
    """1 - max(p ** z, min_keep) for a streak of z all-correct (p_easy) or all-wrong (p_hard) groups; 0 without."""
    if streak is None or length == 0:
        return 0.0
    return 1.0 - max((p_easy if streak == "easy" else p_hard) ** length, min_keep)


def adapt_exploration(p: float, observed_share: float, target_share: float, config: GRESOConfig) -> float:
    """One GRESO step: too many such groups -> lower p (skip more), otherwise raise it."""
    p = p - config.adjust_step if observed_share >= target_share else p + config.adjust_step
    return min(config.p_max, max(config.p_min, p))


class GRESOState:
    """Per prompt the current streak of zero-variance groups, and the two adaptive exploration probabilities."""

    def __init__(self, config: GRESOConfig = GRESOConfig()):
        self.config = config
        self.p_easy, self.p_hard = config.p_easy, config.p_hard
        self.streaks: dict[str, tuple[Streak | None, int]] = {}

    def observe(self, prompt_id: str, rewards: Sequence[float]) -> None:
        kind: Streak | None = None if is_informative(rewards) else ("easy" if min(rewards) >= 1.0 else "hard")
        previous, length = self.streaks.get(prompt_id, (None, 0))
        self.streaks[prompt_id] = (kind, length + 1 if kind is not None and kind == previous else int(kind is not None))

    def adapt(self, step_groups: Sequence[Sequence[float]]) -> None:
        """After a training step, from all groups rolled out for it."""
        if not step_groups:
            return
        zero = [g for g in step_groups if not is_informative(g)]
        easy = sum(min(g) >= 1.0 for g in zero) / len(step_groups)
        hard = (len(zero) / len(step_groups)) - easy
        target = self.config.target_zero_variance
        self.p_easy = adapt_exploration(self.p_easy, easy, target / 3, self.config)
        self.p_hard = adapt_exploration(self.p_hard, hard, 2 * target / 3, self.config)

    def skip_probabilities(self, prompt_ids: Sequence[str]) -> np.ndarray:
        return np.array([
            greso_skip_probability(*self.streaks.get(prompt_id, (None, 0)), self.p_easy, self.p_hard, self.config.min_keep)
            for prompt_id in prompt_ids
        ])

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "p_easy": self.p_easy, "p_hard": self.p_hard,
                "streaks": {prompt_id: list(streak) for prompt_id, streak in self.streaks.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        self.p_easy, self.p_hard = float(state["p_easy"]), float(state["p_hard"])
        self.streaks = {prompt_id: (kind, int(length)) for prompt_id, (kind, length) in state["streaks"].items()}


def skip_filtered(candidates: Sequence[int], skip_probability: np.ndarray, count: int, seed: int) -> list[int]:
    """The first `count` candidates that survive their skip test (one uniform draw each, in candidate order);
    if too few survive, the earliest skipped ones complete the batch."""
    draws = np.random.default_rng(seed).random(len(candidates))
    kept = [c for c, u in zip(candidates, draws) if u >= skip_probability[c]]
    if len(kept) < count:
        kept += [c for c, u in zip(candidates, draws) if u < skip_probability[c]][: count - len(kept)]
    return kept[:count]
