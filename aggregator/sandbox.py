"""Run a function in a child process with a wall-clock limit, killing it when the limit passes.

For work on hostile input that could run for very long inside C code (an XML parse), where a
thread cannot be interrupted. Children are forked from a forkserver that has already imported
the modules named in PRELOAD, so one call costs a fork and a pickle, not a fresh interpreter.

Only exceptions of type `Refusal` (name, message) cross back as such; any other failure in the
child comes back as a `Refusal` describing it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["PRELOAD", "TimeLimitExceeded", "run_limited"]

T = TypeVar("T")
PRELOAD = ["aggregator.parse.feed"]
_lock = threading.Lock()
_context: Any = None


class TimeLimitExceeded(Exception):
    """The child ran past its time limit and was killed."""


class ChildFailed(Exception):
    """The child raised; `kind` is the exception's class name, `args` what it was built with."""

    def __init__(self, kind: str, payload: tuple[Any, ...]) -> None:
        super().__init__(kind, *payload)
        self.kind = kind
        self.payload = payload


def _get_context() -> Any:
    global _context
    with _lock:
        if _context is None:
            if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
                forkserver = multiprocessing.get_context("forkserver")
                forkserver.set_forkserver_preload(PRELOAD)
                _context = forkserver
            else:  # pragma: no cover
                _context = multiprocessing.get_context("spawn")
        return _context


def _child(
    conn: multiprocessing.connection.Connection,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        payload = getattr(exc, "sandbox_payload", None)
        conn.send(("error", type(exc).__name__, payload if payload is not None else (str(exc),)))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


def run_limited(func: Callable[..., T], *args: Any, time_limit: float, **kwargs: Any) -> T:
    """`func(*args, **kwargs)` in a child process; TimeLimitExceeded after `time_limit` s.

    `func` must be importable by name and its arguments and result picklable. An exception in
    the child raises ChildFailed with its class name and `sandbox_payload` (or its message).
    """
    ctx = _get_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(sender, func, args, kwargs), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(time_limit):
            raise TimeLimitExceeded(f"still running after {time_limit:g}s")
        try:
            message = receiver.recv()
        except EOFError:
            died = f"the worker process died (exit {process.exitcode})"
            raise ChildFailed("crash", (died,)) from None
        if message[0] == "ok":
            return message[1]  # type: ignore[no-any-return]
        raise ChildFailed(message[1], tuple(message[2]))
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
