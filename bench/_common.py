"""Helpers shared by the benchmarks: percentiles, tables, the environment, child processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f}"  # NaN -> "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    body = [list(map(str, row)) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, body)])


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def environment(packages: Sequence[str]) -> str:
    """CPU count, load, OS, Python and the versions of `packages`, one line each."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    lines = [
        f"cpus: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))}), load avg: {load}",
        f"os: {platform.platform()}",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()})",
        "packages: " + ", ".join(f"{p} {_version(p)}" for p in packages),
    ]
    return "\n".join(lines)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads); None: this process."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the "(comm)" field.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A helper process that prints one JSON line when ready and stops when stdin closes.

    Its stderr goes to `log_path`; after `stop()`, `final` holds the JSON line it printed
    on the way out (if any).
    """

    args: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None
    _log: IO[str] | None = None

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        self._log = self.log_path.open("w")
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=dict(self.env) if self.env is not None else None,
            cwd=REPO_ROOT,
        )
        line: list[str] = []
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(f"{self.args[2:]} did not start; see {self.log_path}")
        self.ready = json.loads(line[0])
        return self.ready

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON line to the child and read its one-line JSON answer (blocking)."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        answer: dict[str, Any] = json.loads(proc.stdout.readline())
        return answer

    def stop(self, timeout: float = 30.0) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            # communicate() closes stdin: the child's signal to shut down.
            out, _ = proc.communicate(timeout=timeout)
            lines = [x for x in out.splitlines() if x.strip()]
            if lines:
                self.final = json.loads(lines[-1])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if self._log is not None:
                self._log.close()
