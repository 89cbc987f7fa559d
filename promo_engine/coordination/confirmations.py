"""What a worker tells Redis after its events committed (their reservations confirmed, their
answers kept for replays), sent for several request threads in one pipeline: group commit.

A thread that has something to send while another thread's pipeline is on its way waits for
that round trip to end, and then one of the waiting threads sends what all of them queued
meanwhile, in one pipeline. Every thread still returns only once what it queued was sent (or
failed), so a response is never answered before its confirmation reached Redis, and a lone
thread (the tests, the stream consumer, a quiet server) sends alone, exactly as it did.
Under load, a round trip (a wait, a thread switch, the GIL taken back) costs a worker more
than the commands it carries: the profile of a loaded worker put one confirmation's round
trip at 0.32 ms of 3.77 per event (docs/performance.md).

A confirmation that does not arrive changes nothing that matters: its reservation settles
at its deadline (reservations.py), so an error here is only logged by the caller.
"""
from __future__ import annotations

import threading
from typing import Callable

import redis


class _Queued:
    __slots__ = ("add", "retry", "done", "error")

    def __init__(self, add: Callable, retry: Callable):
        self.add, self.retry = add, retry
        self.done = False
        self.error: BaseException | None = None


class GroupSender:
    """One Redis pipeline at a time per process, carrying every thread's queued commands."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._changed = threading.Condition()
        self._queue: list[_Queued] = []
        self._sending = False
        self.batches = 0  # pipelines sent (tests and benchmarks read it)

    def send(self, add: Callable, retry: Callable) -> None:
        """`add(pipeline)` queues this thread's commands; `retry()` sends them again without
        a pipeline after Redis answered NOSCRIPT (it restarted: scripts load again). Returns
        when they were sent; raises the RedisError they met."""
        mine = _Queued(add, retry)
        with self._changed:
            self._queue.append(mine)
            while self._sending and not mine.done:
                self._changed.wait()
            if mine.done:
                if mine.error is not None:
                    raise mine.error
                return
            self._sending = True
            batch, self._queue = self._queue, []
        try:
            self._send(batch)
        finally:
            with self._changed:
                for queued in batch:
                    queued.done = True
                self._sending = False
                self._changed.notify_all()
        if mine.error is not None:
            raise mine.error

    def _send(self, batch: list[_Queued]) -> None:
        self.batches += 1
        try:
            pipe = self.client.pipeline(transaction=False)
            for queued in batch:
                queued.add(pipe)
            try:
                pipe.execute()
            except redis.exceptions.NoScriptError:
                # Every script of the pipeline met the same empty script cache; a command
                # that ran already is harmless to send again (a confirmation of a
                # reservation no longer in flight does nothing).
                for queued in batch:
                    try:
                        queued.retry()
                    except redis.RedisError as exc:
                        queued.error = exc
        except Exception as exc:  # every thread of the batch hears it, not only the sender
            for queued in batch:
                queued.error = exc
