"""What made a result: the command, the machine, the commit, the wall time and the date.

Every results table (``experiments/tables/``) and benchmark record (``benchmarks/``)
carries these lines.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time

import jax

__all__ = ["command", "git_commit", "load_average", "machine", "provenance", "provenance_text"]


def machine() -> str:
    """A one-line description of the machine and the JAX backend."""
    dev = jax.devices()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
        f"{dev.platform} ({dev.device_kind})"
    )


def command() -> str:
    """How this process was started: ``python -m MODULE ARGS`` (or ``python SCRIPT ARGS``
    when the main module has no spec, e.g. a script or a test worker)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["python -m", spec.name] if spec is not None else ["python", sys.argv[0]]
    return " ".join([*head, shlex.join(sys.argv[1:])]).strip()


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(cmd: str, started: float) -> dict:
    """What made a result: command, machine, wall time since ``started``, commit, date."""
    return {
        "command": cmd,
        "machine": machine(),
        "wall_time_s": round(time.time() - started, 1),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": load_average(),
    }


def provenance_text(meta: dict, wall_note: str = "") -> str:
    """The three markdown lines every table and benchmark record carries."""
    return (
        f"Command: `{meta['command']}`  \nMachine: {meta['machine']}  \n"
        f"Wall time: {meta['wall_time_s']} s, commit {meta['commit']}, {meta['date']}"
        f"{wall_note}" + (f"; {meta['load']} at the end" if "load" in meta else "") + "\n"
    )


def load_average() -> str:
    """The 1 / 5 / 15-minute load averages as one phrase (timings on a shared machine
    say how loaded it was)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"
