"""Worker process of KillablePool: `python -m pipeline.verify.worker [module[:function] ...]`.

Reads length-prefixed JSON ["module:function", args] requests on stdin and answers each with a JSON
TaskResult on stdout, in its own main thread (where signal-based code works). A fresh interpreter,
not a multiprocessing child: the caller's __main__ is never re-imported, and no fork of a
threaded parent happens.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time

from pipeline.verify.pool import READY, TaskResult, read_message, write_message


def _exit_when_orphaned(parent_pid: int) -> None:
    """A task may spin in C code forever; if the caller has gone, nobody will kill us: leave."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def resolve(name: str, allowed_modules: set[str]):
    """A task function by "module:qualname": from this project's package or a module the pool preloads."""
    module_name, _, qualname = name.partition(":")
    if not (module_name.startswith("pipeline.") or module_name in allowed_modules):
        raise PermissionError(f"{module_name} is neither a pipeline module nor preloaded by the pool")
    target = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def main(preload: list[str]) -> None:
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the reply stream
    # Our caller enforces the timeouts; math-verify's warning that its own are off is expected here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    allowed_modules = {entry.partition(":")[0] for entry in preload}
    for entry in preload:  # "module" or "module:function" (called once, e.g. to warm caches)
        module_name, _, function_name = entry.partition(":")
        module = importlib.import_module(module_name)
        if function_name:
            getattr(module, function_name)()
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    write_message(replies, READY)
    while True:
        try:
            request = read_message(requests)
        except EOFError:
            return
        if request is None:
            return
        name, args = request
        try:
            function = resolve(name, allowed_modules)
            reply = TaskResult(value=function(*args))
        except Exception as error:  # reported to the caller; the worker lives on
            reply = TaskResult(error=f"exception: {type(error).__name__}: {error}"[:500])
        write_message(replies, reply)


if __name__ == "__main__":
    main(sys.argv[1:])
