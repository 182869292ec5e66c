"""Each configuration of a benchmark in a fresh process of its own: `run_child` runs it and
reads its result (its last line of output, one JSON object), `peak_rss_mib` is what the child
reports as its own peak resident memory.

``getrusage(RUSAGE_SELF).ru_maxrss`` is not that process's own peak on Linux: a child
started by fork + exec inherits its parent's peak (a 1.5 GiB parent gave a 10 MiB child a
reading of 1,511 MiB). ``VmHWM`` in ``/proc/self/status`` is the peak of the process's current
address space, which exec replaces, so it is the child's own.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (``VmHWM``; ``ru_maxrss`` where /proc is
    absent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(cmd: list[str], *, cwd: str | Path | None = None) -> dict:
    """Run ``cmd`` (a benchmark's own child mode) to the end: its last line of output as a
    dict, or ``{"failed": "exit N: <the end of its stderr>"}``."""
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        return {"failed": f"exit {r.returncode}: {r.stderr[-300:]}"}
    return json.loads(r.stdout.strip().splitlines()[-1])
