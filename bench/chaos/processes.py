"""The engine's own processes under the nemesis: ``python -m cli -c <config> sync|push|daemon|
sweep``, started, killed and reaped, each with its output in a log file of the run's folder.

A daemon does both kinds of work, so it runs alone: the nemesis keeps at most one puller
(``sync``, ``sweep`` or a daemon) and one pusher (``push`` or that daemon) alive at a time, the
way the engine is meant to be run on one store (one pusher per source keeps a record's edits in
order; several daemons share a store only through their leases).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PULLERS = ("sync", "sweep", "daemon")
PUSHERS = ("push", "daemon")


@dataclass
class EngineProcess:
    """One running (or finished) engine process."""

    kind: str
    number: int
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        """Whether it has not exited yet."""
        return self.popen.poll() is None


class Processes:
    """Starts engine processes on one config and keeps the figures of what happened to them."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.live: list[EngineProcess] = []
        self.started: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()

    def start(self, kind: str) -> EngineProcess:
        """Start ``prm-mirror <kind>`` in the background."""
        self.started[kind] += 1
        number = sum(self.started.values())
        command = [sys.executable, "-m", "cli", "-c", str(self.config), kind]
        if kind == "daemon":
            command += ["--worker-id", f"chaos-{number}"]
        log = self.folder / f"{number:04d}-{kind}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        process = EngineProcess(kind, number, popen, log)
        self.live.append(process)
        return process

    def reap(self) -> list[EngineProcess]:
        """The processes still running (exit codes of the others are counted)."""
        for process in [p for p in self.live if not p.alive]:
            self.live.remove(process)
            self.exits[f"{process.kind}:{process.popen.returncode}"] += 1
        return list(self.live)

    def busy(self, kind: str) -> bool:
        """Whether a process running now would work alongside a new ``kind`` process."""
        kinds = {p.kind for p in self.reap()}
        pulling = bool(kinds & set(PULLERS)) and kind in PULLERS
        pushing = bool(kinds & set(PUSHERS)) and kind in PUSHERS
        return pulling or pushing

    def kill(self, process: EngineProcess, signum: int = signal.SIGKILL) -> bool:
        """Send ``signum``; ``True`` when the process was still running to receive it."""
        if not process.alive:
            return False
        process.popen.send_signal(signum)
        self.kills[f"{process.kind}:{signal.Signals(signum).name}"] += 1
        if signum == signal.SIGKILL:
            process.popen.wait()
        return True

    def stop_all(self, timeout: float = 60.0) -> None:
        """Let every process end: SIGTERM for daemons (they finish their page), a wait for the
        others, and SIGKILL for whatever is still running after ``timeout``."""
        for process in self.reap():
            if process.kind == "daemon":
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in list(self.live):
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.reap()

    def errors(self) -> Counter[str]:
        """The errors the processes reported, by their first words: a command's ``error:``
        line, the last line of a traceback, a daemon's ``error`` log lines."""
        found: Counter[str] = Counter()
        for log in sorted(self.folder.glob("[0-9]*-*.log")):
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            kind = log.stem.split("-", 1)[1]
            for line in lines:
                if line.startswith("error:"):
                    found[f"{kind}: {line[:120]}"] += 1
                elif '"level": "error"' in line:
                    entry = json.loads(line)
                    cause = _exception(entry.get("exc", "").splitlines())
                    found[f"{kind}: {entry.get('msg', '')}: {cause}"[:160]] += 1
            if any(line.startswith("Traceback") for line in lines):
                found[f"{kind}: {_exception(lines)}"[:160]] += 1
        return found


def _exception(lines: list[str]) -> str:
    """The exception line of the last traceback in ``lines``."""
    starts = [n for n, line in enumerate(lines) if line.startswith("Traceback")]
    after = lines[starts[-1] + 1 :] if starts else []
    return next((line for line in after if line and not line[0].isspace()), "")
