"""A drop-in for TRL's RepeatSampler that mixes VPS-weighted draws into each batch.

Each batch of `batch_size` unique prompts holds floor(lambda * batch_size) prompts drawn with replacement in
proportion to their VPS, and the rest taken in order from the epoch's uniform permutation. The permutation is
exactly RepeatSampler's (a generator seeded once, one `randperm` per epoch), so with lambda = 0 the indices are
identical to RepeatSampler's for the same seed. Every index is then repeated `mini_repeat_count` times in a row
and each batch `repeat_count` times, as TRL's GRPO expects. The weighted draws use a generator seeded from
(seed, epoch, batch), so all processes draw the same prompts. The draws of the current epoch are logged: a
dataloader fetches a batch ahead, so the batch after a checkpoint was drawn before the checkpoint's last score
update, and a resumed run must replay that draw rather than redraw it with newer weights (`draw_log`).

`draw_fn(count, seed)`, when given, replaces the VPS-proportional draw with replacement (the posterior table's
Thompson draw of distinct prompts). `refill(count, key)` hands out more prompts by the same rule for dynamic
sampling, seeded from `key` (e.g. step and round), so a resumed run refills alike. `SkipSampler` is GRESO's rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Sampler

from pipeline.train.peers import skip_filtered

WeightsFn = Callable[[], np.ndarray]
DrawFn = Callable[[int, int], list[int]]  # (count, seed) -> dataset rows


def derived_seed(*key: int) -> int:
    """A 32-bit seed from a tuple of ints (the same on every process)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


REFILL = 1  # keys refills apart from batch draws


class VASRepeatSampler(Sampler[int]):
    def __init__(
        self,
        data_source: Sized,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
        vas_lambda: float = 0.5,
        weights_fn: WeightsFn | None = None,
        draw_fn: DrawFn | None = None,
    ):
        if not 0.0 <= vas_lambda <= 1.0:
            raise ValueError(f"vas_lambda must lie in [0, 1], got {vas_lambda}")
        if vas_lambda > 0 and weights_fn is None and draw_fn is None:
            raise ValueError("vas_lambda > 0 needs weights_fn or draw_fn")
        self.data_source = data_source
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.num_samples = len(data_source)
        self.shuffle = shuffle
        self.seed = seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_().item())
        self.vas_lambda = vas_lambda
        self.weights_fn = weights_fn
        self.draw_fn = draw_fn
        self.weighted_per_batch = int(vas_lambda * batch_size)
        self.epoch = 0
        self._start_batch = 0  # batches of `epoch` already consumed (set by load_state_dict)
        self._batches_done = 0
        self._draws: dict[tuple[int, int], list[int]] = {}  # (epoch, batch) -> weighted draws, replayed on resume
        self.seconds_in_weighted_draws = 0.0  # VAS's own overhead, for the benchmark

    def __len__(self) -> int:
        return (self.num_samples // self.batch_size) * self.batch_size * self.mini_repeat_count * self.repeat_count

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._start_batch = epoch, 0

    def _permutation(self, epoch: int) -> list[int]:
        """RepeatSampler's order in its `epoch`-th iteration: the (epoch + 1)-th randperm of one seeded generator."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(self.num_samples, generator=generator)
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def _draw(self, count: int, seed: int) -> list[int]:
        """`count` prompts by the state-dependent rule: draw_fn, else VPS-proportional with replacement."""
        if count == 0:
            return []
        started = time.perf_counter()
        if self.draw_fn is not None:
            drawn = [int(i) for i in self.draw_fn(count, seed)]
        elif self.weights_fn is None:  # __init__ refuses this already
            raise ValueError("vas_lambda > 0 needs weights_fn or draw_fn")
        else:
            weights = torch.as_tensor(self.weights_fn(), dtype=torch.float64)
            if weights.shape != (self.num_samples,) or not torch.isfinite(weights).all() or (weights < 0).any():
                raise ValueError("weights_fn must return one finite, non-negative weight per dataset row")
            generator = torch.Generator()
            generator.manual_seed(seed)
            drawn = torch.multinomial(weights, count, replacement=True, generator=generator).tolist()
        self.seconds_in_weighted_draws += time.perf_counter() - started
        return drawn

    def _logged(self, epoch: int, batch: int, draw: Callable[[], list[int]]) -> list[int]:
        """A batch's state-dependent prompts, drawn once and replayed from the log after a resume."""
        if (epoch, batch) not in self._draws:
            self._draws[epoch, batch] = draw()
        return self._draws[epoch, batch]

    def _batch(self, epoch: int, batch: int, order: list[int]) -> list[int]:
        uniform_per_batch = self.batch_size - self.weighted_per_batch
        uniform = order[batch * uniform_per_batch : (batch + 1) * uniform_per_batch]
        if self.weighted_per_batch == 0:
            return uniform
        seed = derived_seed(self.seed, epoch, batch)
        return self._logged(epoch, batch, lambda: self._draw(self.weighted_per_batch, seed)) + uniform

    def refill(self, count: int, key: tuple[int, ...]) -> list[int]:
        """`count` more prompts by this sampler's rule (dynamic sampling's refills): weighted draws for a lambda
        share, the rest uniformly without replacement; seeded from `key`."""
        weighted = int(self.vas_lambda * count)
        seed = derived_seed(self.seed, REFILL, *key)
        generator = torch.Generator()
        generator.manual_seed(seed)
        uniform = torch.randperm(self.num_samples, generator=generator)[: count - weighted].tolist()
        return self._draw(weighted, seed) + uniform

    def batches(self) -> Iterator[list[int]]:
        """The unique prompt indices of each batch of the current epoch, from the resume point on."""
        epoch = self.epoch
        order = self._permutation(epoch)
        self._draws = {key: drawn for key, drawn in self._draws.items() if key[0] >= epoch}  # bounded: one epoch
        for batch in range(self._start_batch, self.batches_per_epoch):
            self._batches_done = batch + 1
            # Drawn lazily, when the dataloader asks: the weights then include the latest rollouts.
            yield self._batch(epoch, batch, order)
        self.epoch, self._start_batch, self._batches_done = epoch + 1, 0, 0

    def __iter__(self) -> Iterator[int]:
        for chunk in self.batches():
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def draw_log(self) -> list[list]:
        """The weighted draws made so far in this epoch, as JSON-ready [epoch, batch, indices] rows."""
        return [[epoch, batch, drawn] for (epoch, batch), drawn in sorted(self._draws.items())]

    def load_draw_log(self, rows: list[list]) -> None:
        self._draws = {(int(epoch), int(batch)): [int(i) for i in drawn] for epoch, batch, drawn in rows}

    def state_dict(self) -> dict:
        """Where to resume: the epoch, the batches of it handed out and the draws made (torchdata StatefulDataLoader API)."""
        return {"seed": self.seed, "epoch": self.epoch, "batches_done": self._batches_done, "draws": self.draw_log()}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self._start_batch = state["seed"], state["epoch"], state["batches_done"]
        self.load_draw_log(state.get("draws", []))


SkipFn = Callable[[], np.ndarray]  # per dataset row, the probability of skipping it before rollout


class SkipSampler(VASRepeatSampler):
    """GRESO's pre-rollout filter as a sampler: each batch walks a fresh uniform order of all rows and keeps the
    first `batch_size` that survive their skip test (`peers.skip_filtered`), so the batch stays full. Batches are
    logged and replayed on resume like VAS draws (their skip probabilities depend on training)."""

    def __init__(self, data_source: Sized, mini_repeat_count: int, batch_size: int = 1, repeat_count: int = 1,
                 shuffle: bool = True, seed: int | None = None, *, skip_fn: SkipFn):
        super().__init__(data_source, mini_repeat_count, batch_size, repeat_count, shuffle, seed, vas_lambda=0.0)
        self.skip_fn = skip_fn

    def _filtered(self, count: int, seed: int) -> list[int]:
        started = time.perf_counter()
        generator = torch.Generator()
        generator.manual_seed(seed)
        candidates = torch.randperm(self.num_samples, generator=generator).tolist()
        kept = skip_filtered(candidates, self.skip_fn(), count, seed)
        self.seconds_in_weighted_draws += time.perf_counter() - started
        return kept

    def _batch(self, epoch: int, batch: int, order: list[int]) -> list[int]:
        seed = derived_seed(self.seed, epoch, batch)
        return self._logged(epoch, batch, lambda: self._filtered(self.batch_size, seed))

    def refill(self, count: int, key: tuple[int, ...]) -> list[int]:
        return self._filtered(count, derived_seed(self.seed, REFILL, *key))
