"""Variance-Aware Sampling (VAS) scores: outcome variance, trajectory diversity, Variance Promotion Score.

For a prompt x with G rollouts:
    OVS(x) = p (1 - p)               p = mean accuracy reward of the rollouts (graded rewards in [0, 1] allowed)
    TDS(x) = diversity of the rollouts (distinct-n over the group, or 1 - self-BLEU), higher = more diverse
    VPS(x) = a * OVS_norm(x) + b * TDS_norm(x)
where *_norm is min-max normalisation over the scored prompts, floored so that no prompt's weight is exactly 0.
GRPO's advantage is zero for a group whose rewards are all equal: high-OVS prompts are the ones that still teach.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

TokenIds = Sequence[int]
DiversityMethod = Literal["distinct_n", "self_bleu"]
VPS_STATE_FILE = "vps_state.json"


def outcome_variance(rewards: Sequence[float]) -> float:
    """p (1 - p) with p the mean reward clipped to [0, 1]: 0 for all-correct and all-wrong groups, 1/4 at p = 1/2."""
    if len(rewards) == 0:
        return 0.0
    p = min(1.0, max(0.0, float(np.mean(rewards))))
    return p * (1.0 - p)


def _ngrams(tokens: TokenIds, n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(sequences: Sequence[TokenIds], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the group: 1/G for G identical rollouts, 1 when nothing repeats."""
    grams = [gram for tokens in sequences for gram in _ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _sentence_bleu(hypothesis: TokenIds, references: Sequence[TokenIds], max_n: int) -> float:
    """BLEU with clipped counts against several references and NLTK's "method1" smoothing (0.1 for empty matches)."""
    if not hypothesis:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        hyp_counts = Counter(_ngrams(hypothesis, n))
        total = sum(hyp_counts.values())
        if total == 0:  # hypothesis shorter than n: precision undefined, smooth like an empty match
            log_precision += math.log(0.1 / 1)
            continue
        max_ref_counts: Counter = Counter()
        for reference in references:
            for gram, count in Counter(_ngrams(reference, n)).items():
                max_ref_counts[gram] = max(max_ref_counts[gram], count)
        matches = sum(min(count, max_ref_counts[gram]) for gram, count in hyp_counts.items())
        log_precision += math.log((matches or 0.1) / total)
    hyp_len = len(hypothesis)
    closest_ref_len = min((abs(len(ref) - hyp_len), len(ref)) for ref in references)[1]
    brevity = 1.0 if hyp_len > closest_ref_len else math.exp(1 - closest_ref_len / hyp_len)
    return brevity * math.exp(log_precision / max_n)


def self_bleu_diversity(sequences: Sequence[TokenIds], max_n: int = 4) -> float:
    """1 - mean BLEU of each rollout against the others: 0 for identical rollouts (self-BLEU is a similarity)."""
    if len(sequences) < 2:
        return 0.0
    bleus = [_sentence_bleu(seq, [*sequences[:i], *sequences[i + 1 :]], max_n) for i, seq in enumerate(sequences)]
    return 1.0 - float(np.mean(bleus))


@dataclass(frozen=True)
class DiversityConfig:
    method: DiversityMethod = "distinct_n"
    n: int = 2  # distinct-n's n, or self-BLEU's maximum n-gram order


def trajectory_diversity(sequences: Sequence[TokenIds], config: DiversityConfig = DiversityConfig()) -> float:
    """TDS of one group of unpadded completion token ids; 0 with fewer than two rollouts (nothing to compare)."""
    sequences = [list(seq) for seq in sequences]
    if len(sequences) < 2:
        return 0.0
    if config.method == "distinct_n":
        return distinct_n(sequences, config.n)
    return self_bleu_diversity(sequences, config.n)


def minmax_normalise(values: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Map to [floor, 1]; a constant vector maps to all ones (it ranks nothing, so it must not bias the draw)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    if high - low <= 1e-12:
        return np.ones_like(values)
    return floor + (1.0 - floor) * (values - low) / (high - low)


def variance_promotion_scores(
    ovs: np.ndarray, tds: np.ndarray, a: float = 0.8, b: float = 0.2, floor: float = 1e-3
) -> np.ndarray:
    """VPS = a * OVS_norm + b * TDS_norm over the scored prompts."""
    return a * minmax_normalise(ovs, floor) + b * minmax_normalise(tds, floor)


@dataclass(frozen=True)
class VPSConfig:
    ovs_weight: float = 0.8  # a
    tds_weight: float = 0.2  # b
    floor: float = 1e-3
    # VPS of a prompt never scored: a number, or "mean" (the mean VPS of the scored prompts, 1.0 before any).
    unscored_prior: float | Literal["mean"] = "mean"
    # Weight of a new observation in the per-prompt EMA of p and TDS (1.0 keeps only the latest group).
    ema_new_weight: float = 0.5
    diversity: DiversityConfig = DiversityConfig()


@dataclass
class PromptScore:
    pass_rate: float  # EMA of p
    diversity: float | None  # EMA of TDS; None when only a pass rate is known (e.g. seeded from the RL set)
    observations: int = 0  # rollout groups seen


class VPSScoreTable:
    """Per-prompt running estimates of p and TDS, keyed by prompt id, turned into sampling weights."""

    def __init__(self, config: VPSConfig = VPSConfig()):
        self.config = config
        self.scores: dict[str, PromptScore] = {}
        self._version = 0  # bumps on every change so `weights` can reuse its last answer
        self._cached: tuple[int, tuple[str, ...], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def seed_pass_rate(self, prompt_id: str, pass_rate: float) -> None:
        """Initialise p from an offline estimate (the RL set's `pass_rate`); TDS stays unknown until rollouts."""
        if prompt_id not in self.scores and pass_rate is not None and not math.isnan(pass_rate):
            self.scores[prompt_id] = PromptScore(float(pass_rate), None, 0)

    def seed_counts(self, prompt_id: str, num_correct: int, num_rollouts: int) -> None:
        """Initialise p from the curated rollouts as counts: their posterior mean under a flat prior, so a pass rate
        from two rollouts (generation stops once selection is settled) starts less extreme than one from sixteen."""
        if prompt_id not in self.scores and num_rollouts:
            self.scores[prompt_id] = PromptScore((num_correct + 1) / (num_rollouts + 2), None, 0)
            self._version += 1

    def update(self, prompt_id: str, rewards: Sequence[float], completion_token_ids: Sequence[TokenIds]) -> None:
        """Fold one rollout group (accuracy rewards + unpadded completion ids) into the prompt's EMA."""
        p = min(1.0, max(0.0, float(np.mean(rewards))))
        tds = trajectory_diversity(completion_token_ids, self.config.diversity)
        current = self.scores.get(prompt_id)
        if current is None:
            self.scores[prompt_id] = PromptScore(p, tds, 1)
        else:  # includes a pass rate seeded from the RL set, which the first groups then move away from
            alpha = self.config.ema_new_weight
            current.pass_rate = (1 - alpha) * current.pass_rate + alpha * p
            current.diversity = tds if current.diversity is None else (1 - alpha) * current.diversity + alpha * tds
            current.observations += 1
        self._version += 1

    def end_batch(self) -> None:
        """The EMA has no clock (PosteriorScoreTable's interface)."""

    def scored_vps(self) -> dict[str, float]:
        """VPS of every scored prompt; a prompt with no TDS yet gets the mean normalised TDS of those with one."""
        if not self.scores:
            return {}
        ids = list(self.scores)
        ovs = np.array([self.scores[i].pass_rate * (1 - self.scores[i].pass_rate) for i in ids])
        diversities = [self.scores[i].diversity for i in ids]
        known = np.array([d is not None for d in diversities])
        tds_norm = np.full(len(ids), 0.5)
        if known.any():
            tds_norm[known] = minmax_normalise(np.array([d for d in diversities if d is not None]), self.config.floor)
            tds_norm[~known] = tds_norm[known].mean()
        vps = self.config.ovs_weight * minmax_normalise(ovs, self.config.floor) + self.config.tds_weight * tds_norm
        return dict(zip(ids, vps.tolist()))

    def vps(self, prompt_ids: Sequence[str]) -> np.ndarray:
        """VPS aligned with `prompt_ids`, NaN where a prompt has no score yet."""
        scored = self.scored_vps()
        return np.array([scored.get(prompt_id, np.nan) for prompt_id in prompt_ids], dtype=np.float64)

    def weights(self, prompt_ids: Sequence[str]) -> np.ndarray:
        """Sampling weights aligned with `prompt_ids` (dataset order); unscored prompts get the prior."""
        key = tuple(prompt_ids)
        if self._cached is not None and self._cached[0] == self._version and self._cached[1] == key:
            return self._cached[2]
        weights = self.vps(prompt_ids)
        unscored = np.isnan(weights)
        prior = self.config.unscored_prior
        if prior == "mean":
            prior = float(np.mean(weights[~unscored])) if (~unscored).any() else 1.0
        weights[unscored] = prior
        self._cached = (self._version, key, weights)
        return weights

    def state_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "scores": {prompt_id: asdict(score) for prompt_id, score in self.scores.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("kind", "vps") != "vps":
            raise ValueError(f"this score table state is a {state['kind']!r} table, not the paper's VPS one (VASConfig.scorer)")
        self.scores = {prompt_id: PromptScore(**score) for prompt_id, score in state["scores"].items()}
        self._version += 1

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, config: VPSConfig | None = None) -> VPSScoreTable:
        """Load scores; the saved config is used unless one is given (a resumed run may change weights)."""
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        table = cls(config or vps_config_from_dict(state["config"]))
        table.load_state_dict(state)
        return table


def vps_config_from_dict(values: Mapping) -> VPSConfig:
    fields = dict(values)
    fields["diversity"] = DiversityConfig(**fields.get("diversity", {}))
    return VPSConfig(**fields)


def group_rollouts(
    prompt_ids: Sequence[str], rewards: Sequence[float], completion_ids: Sequence[TokenIds], group_size: int
) -> Iterable[tuple[str, list[float], list[TokenIds]]]:
    """Split a flat batch into its consecutive groups of `group_size` rollouts of one prompt (TRL's layout)."""
    if not len(prompt_ids) == len(rewards) == len(completion_ids) or len(prompt_ids) % group_size:
        raise ValueError(f"{len(prompt_ids)} rollouts do not split into groups of {group_size}")
    for start in range(0, len(prompt_ids), group_size):
        ids = set(prompt_ids[start : start + group_size])
        if len(ids) != 1:
            raise ValueError(f"rollouts {start}..{start + group_size - 1} mix prompts {sorted(ids)}")
        yield (
            prompt_ids[start],
            [float(r) for r in rewards[start : start + group_size]],
            list(completion_ids[start : start + group_size]),
        )


# --- Posterior VAS: a Beta posterior of each prompt's pass rate, staleness-aware, drawn by Thompson sampling. ---
#
# The paper's VPS ranks prompts by a point estimate of p (1 - p). Two things it ignores cost zero-variance groups:
# how sure the estimate is (one group of 8 all-right rollouts says little), and how old it is (the policy moved on
# since). Here each prompt keeps Beta pseudo-counts of right and wrong rollouts; evidence loses weight with a
# half-life in training batches, so an estimate decays back toward the flat prior unless it is renewed. A batch
# takes the prompts with the highest chance that a group of G rollouts is *not* all-equal, under one draw of p
# from each posterior (Thompson sampling): uncertain prompts get explored, sure-saturated ones skipped, and no
# prompt is drawn twice in a batch.


def informative_probability(p: np.ndarray, group_size: int) -> np.ndarray:
    """P(G rollouts of pass rate p are not all-equal) = 1 - p^G - (1 - p)^G."""
    p = np.asarray(p, dtype=np.float64)
    return 1.0 - p**group_size - (1.0 - p) ** group_size


def expected_informative_probability(right: np.ndarray, wrong: np.ndarray, group_size: int) -> np.ndarray:
    """E[1 - p^G - (1-p)^G] for p ~ Beta(right, wrong): E[p^G] = prod_{k<G} (right + k) / (right + wrong + k)."""
    right, wrong = np.asarray(right, dtype=np.float64)[:, None], np.asarray(wrong, dtype=np.float64)[:, None]
    k = np.arange(group_size)
    all_right = np.prod((right + k) / (right + wrong + k), axis=1)
    all_wrong = np.prod((wrong + k) / (right + wrong + k), axis=1)
    return 1.0 - all_right - all_wrong


@dataclass(frozen=True)
class PosteriorConfig:
    prior: float = 1.0  # Beta(prior, prior) before any evidence: flat
    # How many rollouts an offline pass rate (the RL set's `pass_rate`) counts as.
    seed_rollouts: float = 8.0
    # Evidence halves in weight every this many training batches since it was observed (the policy moves on).
    half_life_batches: float = 20.0


@dataclass
class PosteriorScore:
    right: float  # decayed count of right rollouts (excluding the prior)
    wrong: float
    batch: int  # the table's batch clock when the counts were last decayed
    observations: int = 0  # rollout groups seen

    @property
    def pass_rate(self) -> float:  # posterior mean under the flat prior, for logs and plots
        return (self.right + 1.0) / (self.right + self.wrong + 2.0)


class PosteriorScoreTable:
    """Per-prompt Beta posteriors of p, updated from training rollouts; the same interface as VPSScoreTable."""

    def __init__(self, config: PosteriorConfig = PosteriorConfig(), group_size: int = 8):
        self.config, self.group_size = config, group_size
        self.scores: dict[str, PosteriorScore] = {}
        self.batches = 0  # clock: training batches folded in so far

    def __len__(self) -> int:
        return len(self.scores)

    def _decay(self, score: PosteriorScore) -> None:
        factor = 0.5 ** ((self.batches - score.batch) / self.config.half_life_batches)
        score.right, score.wrong, score.batch = score.right * factor, score.wrong * factor, self.batches

    def seed_pass_rate(self, prompt_id: str, pass_rate: float) -> None:
        if prompt_id not in self.scores and pass_rate is not None and not math.isnan(pass_rate):
            k = self.config.seed_rollouts
            self.scores[prompt_id] = PosteriorScore(float(pass_rate) * k, (1 - float(pass_rate)) * k, self.batches)

    def seed_counts(self, prompt_id: str, num_correct: int, num_rollouts: int) -> None:
        """The curated rollouts are evidence as they are: right and wrong counts, weighing as many as there were."""
        if prompt_id not in self.scores and num_rollouts:
            self.scores[prompt_id] = PosteriorScore(float(num_correct), float(num_rollouts - num_correct), self.batches)

    def update(self, prompt_id: str, rewards: Sequence[float], completion_token_ids: Sequence[TokenIds] = ()) -> None:
        """Fold one group in: its rewards (clipped to [0, 1]) add to the right and wrong counts."""
        clipped = np.clip(np.asarray(rewards, dtype=np.float64), 0.0, 1.0)
        score = self.scores.setdefault(prompt_id, PosteriorScore(0.0, 0.0, self.batches))
        self._decay(score)
        score.right += float(clipped.sum())
        score.wrong += float(len(clipped) - clipped.sum())
        score.observations += 1

    def end_batch(self) -> None:
        """Advance the staleness clock by one training batch."""
        self.batches += 1

    def _counts(self, prompt_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        right, wrong, age = (np.zeros(len(prompt_ids)) for _ in range(3))
        for row, prompt_id in enumerate(prompt_ids):
            score = self.scores.get(prompt_id)
            if score is not None:
                right[row], wrong[row], age[row] = score.right, score.wrong, self.batches - score.batch
        factor = 0.5 ** (age / self.config.half_life_batches)
        return self.config.prior + right * factor, self.config.prior + wrong * factor

    def weights(self, prompt_ids: Sequence[str]) -> np.ndarray:
        """Posterior expected chance that a group is informative (all prompts have one: unscored = the prior)."""
        return expected_informative_probability(*self._counts(prompt_ids), self.group_size)

    def vps(self, prompt_ids: Sequence[str]) -> np.ndarray:
        """`weights`, NaN where a prompt has no evidence yet (what the plots skip)."""
        values = self.weights(prompt_ids)
        values[[prompt_id not in self.scores for prompt_id in prompt_ids]] = np.nan
        return values

    def draw(self, prompt_ids: Sequence[str], count: int, seed: int) -> list[int]:
        """Thompson sampling: one p per prompt from its posterior, the `count` most informative rows, distinct."""
        right, wrong = self._counts(prompt_ids)
        sampled = np.random.default_rng(seed).beta(right, wrong)
        order = np.argsort(-informative_probability(sampled, self.group_size), kind="stable")
        return order[:count].tolist()

    def state_dict(self) -> dict:
        return {"kind": "posterior", "config": asdict(self.config), "group_size": self.group_size,
                "batches": self.batches, "scores": {i: asdict(s) for i, s in self.scores.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("kind") != "posterior":
            raise ValueError("this score table state is the paper's VPS table, not a posterior one (VASConfig.scorer)")
        self.batches = int(state["batches"])
        self.scores = {prompt_id: PosteriorScore(**score) for prompt_id, score in state["scores"].items()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()), encoding="utf-8")


ScoreTable = VPSScoreTable | PosteriorScoreTable


def load_score_table(path: str | Path) -> ScoreTable:
    """Either table from its saved state (the paper's VPS table has no `kind`)."""
    state = json.loads(Path(path).read_text(encoding="utf-8"))
    if state.get("kind") == "posterior":
        table = PosteriorScoreTable(PosteriorConfig(**state["config"]), state["group_size"])
        table.load_state_dict(state)
        return table
    return VPSScoreTable.load(path)
