"""A drop-in for TRL's RepeatSampler that mixes VPS-weighted draws into each batch.

Each batch of `batch_size` unique prompts holds floor(lambda * batch_size) prompts drawn with replacement in
proportion to their VPS, and the rest taken in order from the epoch's uniform permutation. The permutation is
exactly RepeatSampler's (a generator seeded once, one `randperm` per epoch), so with lambda = 0 the indices are
identical to RepeatSampler's for the same seed. Every index is then repeated `mini_repeat_count` times in a row
and each batch `repeat_count` times, as TRL's GRPO expects. The weighted draws use a generator seeded from
(seed, epoch, batch), so all processes draw the same prompts. The draws of the current epoch are logged: a
dataloader fetches a batch ahead, so the batch after a checkpoint was drawn before the checkpoint's last score
update, and a resumed run must replay that draw rather than redraw it with newer weights (`draw_log`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Sampler

WeightsFn = Callable[[], np.ndarray]


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
    ):
        if not 0.0 <= vas_lambda <= 1.0:
            raise ValueError(f"vas_lambda must lie in [0, 1], got {vas_lambda}")
        if vas_lambda > 0 and weights_fn is None:
            raise ValueError("vas_lambda > 0 needs weights_fn")
        self.data_source = data_source
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.num_samples = len(data_source)
        self.shuffle = shuffle
        self.seed = seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_().item())
        self.vas_lambda = vas_lambda
        self.weights_fn = weights_fn
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

    def _weighted_draw(self, epoch: int, batch: int) -> list[int]:
        if self.weighted_per_batch == 0:
            return []
        if (epoch, batch) in self._draws:
            return self._draws[epoch, batch]
        started = time.perf_counter()
        weights = torch.as_tensor(self.weights_fn(), dtype=torch.float64)
        if weights.shape != (self.num_samples,) or not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("weights_fn must return one finite, non-negative weight per dataset row")
        generator = torch.Generator()
        generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch, batch]).generate_state(1)[0]))
        drawn = torch.multinomial(weights, self.weighted_per_batch, replacement=True, generator=generator).tolist()
        self.seconds_in_weighted_draws += time.perf_counter() - started
        self._draws[epoch, batch] = drawn
        return drawn

    def batches(self) -> Iterator[list[int]]:
        """The unique prompt indices of each batch of the current epoch, from the resume point on."""
        epoch, uniform_per_batch = self.epoch, self.batch_size - self.weighted_per_batch
        order = self._permutation(epoch)
        self._draws = {key: drawn for key, drawn in self._draws.items() if key[0] >= epoch}  # bounded: one epoch
        for batch in range(self._start_batch, self.batches_per_epoch):
            uniform = order[batch * uniform_per_batch : (batch + 1) * uniform_per_batch]
            self._batches_done = batch + 1
            # Drawn lazily, when the dataloader asks: the weights then include the latest rollouts.
            yield self._weighted_draw(epoch, batch) + uniform
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
