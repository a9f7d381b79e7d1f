"""Each visitor's running decodes, so that their Stop and their next Run reach only their own.

Gradio's `cancels=` kills a generator between two of its yields: the decode can never show how
it ended, and its last messages race the Stop's own output (issue 16: "Error" badges, a status
left at "Decoding… round 6", a cursor still blinking). Instead a decode asks between rounds
whether it should end (the engine's `should_stop`) and, when it should, renders its own end.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

STOPPED = "stopped"      # the visitor pressed Stop
NEW_RUN = "new run"      # the visitor pressed Run: their comparison gives up the decode slot


@dataclass(eq=False)
class Job:
    session: str | None
    kind: str                 # "run" or "compare"
    ended_by: str = ""        # STOPPED or NEW_RUN once it was asked to end

    def should_stop(self) -> bool:
        return bool(self.ended_by)


class Sessions:
    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: list[Job] = []
        self._runs_asked: dict = {}        # session -> Run presses so far
        self._runs_at_end: dict = {}       # session -> Run presses when its last run ended

    @contextmanager
    def job(self, session, kind: str):
        """Register a decode while it runs (also a cancelled or failed one leaves)."""
        job = Job(session, kind)
        with self._lock:
            self._jobs.append(job)
        try:
            yield job
        finally:
            with self._lock:
                self._jobs.remove(job)

    def stop(self, session) -> int:
        """Stop: every decode of the session ends after its current round. Returns how many."""
        with self._lock:
            return self._end(session, ("run", "compare"), STOPPED)

    def new_run(self, session, slots: int) -> str:
        """Run pressed: the session's comparison ends after its current round, so that the run
        never waits behind it. Returns what the run will wait for ('' when nothing)."""
        with self._lock:
            self._runs_asked[session] = self._runs_asked.get(session, 0) + 1
            own = self._end(session, ("compare",), NEW_RUN)
            others = sum(j.session != session for j in self._jobs)
        if others >= slots:
            return (f"Waiting for another request to finish decoding (this server decodes {slots} at a "
                    "time); your run starts right after it.")
        if own:
            return "Stopping the comparison to start this run…"
        return ""

    def run_ended(self, session) -> None:
        with self._lock:
            self._runs_at_end[session] = self._runs_asked.get(session, 0)

    def run_asked_since_last_run(self, session) -> bool:
        """Whether Run was pressed after the session's last run ended: its automatic comparison,
        still waiting to start, would hold up that new run."""
        with self._lock:
            return self._runs_asked.get(session, 0) != self._runs_at_end.get(session, 0)

    def forget(self, session) -> None:
        """The visitor left (their running decodes, if any, are cancelled by Gradio)."""
        with self._lock:
            self._runs_asked.pop(session, None)
            self._runs_at_end.pop(session, None)

    def _end(self, session, kinds, why: str) -> int:
        mine = [j for j in self._jobs if j.session == session and j.kind in kinds and not j.ended_by]
        for j in mine:
            j.ended_by = why
        return len(mine)
