"""A process pool with a per-task deadline: a worker that overruns it is killed and replaced.

concurrent.futures and multiprocessing.Pool cannot kill one hung worker, and math-verify's own
timeouts (signal.alarm) only work on a main thread; here each task runs in a worker's main thread
and the caller enforces the deadline from outside. Workers are plain subprocesses
(`python -m pipeline.verify.worker`) talking length-prefixed JSON over pipes (no pickle: task arguments are untrusted text): safe to start from any thread,
and the caller's __main__ is never re-run (no `if __name__ == "__main__"` guard needed).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import IO, Any

TIMEOUT = "timeout"
WORKER_DIED = "worker_died"
READY = "ready"  # a worker's first message, once its preloads are imported
STARTUP_TIMEOUT_S = 120.0

_HEADER = struct.Struct("!I")
# The directory holding the `pipeline` package, so workers import this very copy of it.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class TaskResult:
    """A task's return value, or why there is none: "timeout", "worker_died" or "exception: ..."."""

    value: Any = None
    error: str | None = None


def function_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def _encode(value: object) -> object:
    if isinstance(value, TaskResult):
        return {"value": value.value, "error": value.error}
    if callable(value):
        return function_name(value)
    raise TypeError(f"cannot send {type(value).__name__} to a worker")


def write_message(stream: IO[bytes], message: object) -> None:
    payload = json.dumps(message, default=_encode).encode("utf-8")
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    """The next message (JSON, shaped by the protocol); EOFError when the other side has gone, ValueError when it is garbled."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    return json.loads(stream.read(_HEADER.unpack(header)[0]))


def _piped(stream: IO[bytes] | None) -> IO[bytes]:
    if stream is None:  # never: the worker is started with both pipes
        raise RuntimeError("verify worker started without its pipes")
    return stream


def _readable(streams: Iterable[IO[bytes]], timeout: float) -> list[IO[bytes]]:
    """The streams with something to read; multiprocessing's `wait` takes any object with a fileno(), though it is
    typed for its own connections."""
    return wait(list(streams), timeout=timeout)  # type: ignore[arg-type, return-value]


class _Worker:
    def __init__(self, preload: Sequence[str]):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.verify.worker", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.requests, self.replies = _piped(self.process.stdin), _piped(self.process.stdout)
        self.ready = False

    def await_ready(self) -> None:
        """Read the worker's READY message (it is waiting to be read)."""
        try:
            message = read_message(self.replies)
        except (EOFError, OSError, ValueError):
            message = None
        if message != READY:
            self.kill()
            raise RuntimeError(f"verify worker failed to start (exit code {self.process.returncode}); see its stderr")
        self.ready = True

    def send(self, message: object) -> None:
        write_message(self.requests, message)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.requests, self.replies):
            stream.close()

    def stop(self) -> None:
        """Ask politely, then kill."""
        try:
            self.send(None)
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class KillablePool:
    """`workers` subprocesses, one task each in flight, started on first use; thread-safe (one map
    at a time). `preload` names what each worker does before it reports ready: "module" imports it,
    "module:function" also calls function() (e.g. a warm-up; math-verify's first calls take ~0.5 s)."""

    def __init__(self, workers: int, timeout_s: float, *, preload: Sequence[str] = ()):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.size = workers
        self.timeout_s = timeout_s
        self.preload = tuple(preload)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.replaced = 0  # workers killed (timeout) or found dead, and replaced

    def start(self, *, wait: bool = False) -> None:
        """Start the workers now: they import in the background while the caller does other work, or,
        with `wait`, until they are ready (e.g. before timing anything)."""
        with self._lock:
            self._ensure_started()
            if wait:
                for worker in self._workers:
                    if not worker.ready:
                        worker.await_ready()

    def _ensure_started(self) -> None:
        if not self._workers:
            self._workers = [_Worker(self.preload) for _ in range(self.size)]

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self.replaced += 1
        fresh = _Worker(self.preload)
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def map(self, function: Callable[..., Any], arg_tuples: Sequence[tuple]) -> list[TaskResult]:
        """function(*args) for each tuple, results in input order. `function` must be module-level
        (it is sent by name). The deadline of a task counts from when a worker receives it, so it
        includes a fresh worker's start-up."""
        if not arg_tuples:
            return []
        with self._lock:
            self._ensure_started()
            return self._run(function, arg_tuples)

    def _run(self, function: Callable[..., Any], arg_tuples: Sequence[tuple]) -> list[TaskResult]:
        results: list[TaskResult] = [TaskResult(error=WORKER_DIED)] * len(arg_tuples)
        pending = deque(range(len(arg_tuples)))
        idle = deque(worker for worker in self._workers if worker.ready)
        starting = {worker.replies: worker for worker in self._workers if not worker.ready}
        running: dict[IO[bytes], tuple[_Worker, int, float]] = {}
        while pending or running:
            while idle and pending:
                worker, index = idle.popleft(), pending.popleft()
                try:
                    worker.send((function, arg_tuples[index]))
                except OSError:  # died between tasks: replace it and retry the task
                    pending.appendleft(index)
                    fresh = self._replace(worker)
                    starting[fresh.replies] = fresh
                    continue
                # the deadline starts once a ready worker has the task: start-up never counts
                running[worker.replies] = (worker, index, time.monotonic() + self.timeout_s)
            deadline = min((deadline for _, _, deadline in running.values()), default=None)
            timeout = STARTUP_TIMEOUT_S if deadline is None else max(0.0, deadline - time.monotonic())
            ready_streams = _readable([*running, *starting], timeout)
            if not ready_streams and not running:
                raise RuntimeError(f"no verify worker started within {STARTUP_TIMEOUT_S} s")
            for stream in ready_streams:
                if stream in starting:
                    worker = starting.pop(stream)
                    worker.await_ready()
                    idle.append(worker)
                    continue
                worker, index, _ = running.pop(stream)
                try:
                    results[index] = TaskResult(**read_message(stream))
                    idle.append(worker)
                except (EOFError, OSError, ValueError, TypeError):  # crashed mid-task: result stays WORKER_DIED
                    fresh = self._replace(worker)
                    starting[fresh.replies] = fresh
            now = time.monotonic()
            for stream, (worker, index, deadline) in list(running.items()):
                if deadline <= now:
                    del running[stream]
                    results[index] = TaskResult(error=TIMEOUT)
                    fresh = self._replace(worker)
                    starting[fresh.replies] = fresh
        return results

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.stop()
            self._workers = []
