"""cProfile of every thread of a process by its CPU time (bench/cascade.py's centers, with
``CASCADE_BENCH_PROFILE=DIR``)."""

from __future__ import annotations

import cProfile
import marshal
import threading
import time
from pathlib import Path


class ThreadProfiles:
    """cProfile of **every** thread of a center process, timed by each thread's CPU time (not wall
    time: a thread waiting for a core or the disk costs nothing here).  ``mark()`` snapshots what was
    counted so far; ``dump()`` writes what was counted since the mark (the warm-up left out)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.marked: dict = {}
        threading.setprofile(self._start_thread)  # threads started from now on
        self._start_thread()  # this (the event loop's) thread

    def _start_thread(self, *_args) -> None:
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()  # replaces this hook for the thread

    def _stats(self) -> dict:
        total: dict = {}
        for profile in list(self.profiles):
            profile.snapshot_stats()
            for func, (cc, nc, tt, ct, callers) in profile.stats.items():
                was = total.get(func, (0, 0, 0.0, 0.0, {}))
                merged = dict(was[4])
                for caller, counts in callers.items():
                    merged[caller] = _add(merged.get(caller), counts)
                total[func] = (was[0] + cc, was[1] + nc, was[2] + tt, was[3] + ct, merged)
        return total

    def mark(self) -> None:
        self.marked = self._stats()

    def dump(self, path: Path) -> None:
        since = {}
        for func, (cc, nc, tt, ct, callers) in self._stats().items():
            was = self.marked.get(func, (0, 0, 0.0, 0.0, {}))
            if nc - was[1] > 0:
                new_callers = {c: _add(n, was[4].get(c), -1) for c, n in callers.items()}
                since[func] = (cc - was[0], nc - was[1], tt - was[2], ct - was[3], new_callers)
        path.write_bytes(marshal.dumps(since))


def _add(a: tuple | None, b: tuple | None, sign: int = 1) -> tuple:
    a, b = a or (0, 0, 0.0, 0.0), b or (0, 0, 0.0, 0.0)
    return tuple(x + sign * y for x, y in zip(a, b))
