"""math-verify in worker processes, each answer under an outer wall-clock timeout.

math-verify's own timeouts use `signal.alarm`, which raises off the main thread (Prefect's thread
runner, a TRL reward call from a worker thread). Workers here run it with those timeouts disabled; the
parent waits on their pipes and kills and replaces any worker that overruns, so no input can hang or
crash the caller. Workers are started once and reused.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

TIMEOUT = "timeout"
ERROR = "error"


def _worker(connection: Connection) -> None:
    import logging

    from math_verify import parse, verify

    # Its "timeout disabled" warning fires on every call; the outer timeout here is the real one.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    while True:
        try:
            gold, pred = connection.recv()
        except EOFError:
            return
        try:
            gold_parsed = parse(f"${gold}$", parsing_timeout=None)
            pred_parsed = parse(f"${pred}$", parsing_timeout=None)
            outcome = bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))
        except Exception:  # math-verify raises on odd inputs; an error is a verdict, not a crash
            outcome = ERROR
        connection.send(outcome)


class _Slot:
    def __init__(self, context):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.job: int | None = None
        self.deadline = 0.0

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class MathVerifyPool:
    def __init__(self, workers: int = 2, timeout_s: float = 5.0):
        self.workers = workers
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context("spawn")  # no forked copies of the caller's threads
        self._slots: list[_Slot] = []

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool | str]:
        """For each (gold, pred): True/False, or TIMEOUT / ERROR."""
        if not pairs:
            return []
        while len(self._slots) < self.workers:
            self._slots.append(_Slot(self._context))
        results: list[bool | str | None] = [None] * len(pairs)
        queue = deque(range(len(pairs)))
        busy: dict[Connection, _Slot] = {}
        while queue or busy:
            for slot in self._slots:
                if slot.job is None and queue:
                    slot.job = queue.popleft()
                    slot.deadline = time.monotonic() + self.timeout_s
                    slot.connection.send(pairs[slot.job])
                    busy[slot.connection] = slot
            soonest = min(slot.deadline for slot in busy.values())
            for connection in wait(list(busy), timeout=max(0.0, soonest - time.monotonic())):
                slot = busy.pop(connection)
                try:
                    results[slot.job] = connection.recv()
                except (EOFError, OSError):  # the worker died (e.g. out of memory): replace it
                    results[slot.job] = ERROR
                    self._replace(slot)
                slot.job = None
            now = time.monotonic()
            for connection, slot in list(busy.items()):
                if slot.deadline <= now:
                    results[slot.job] = TIMEOUT
                    del busy[connection]
                    self._replace(slot)
        return results  # type: ignore[return-value]

    def _replace(self, slot: _Slot) -> None:
        slot.stop()
        self._slots[self._slots.index(slot)] = _Slot(self._context)

    def close(self) -> None:
        for slot in self._slots:
            slot.stop()
        self._slots = []
