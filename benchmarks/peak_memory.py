"""Peak resident memory of this process, for the benchmarks that run each configuration in a
child process of their own.

``getrusage(RUSAGE_SELF).ru_maxrss`` is not that process's own peak on Linux: a child
started by fork + exec inherits its parent's peak (a 1.5 GiB parent gave a 10 MiB child a
reading of 1,511 MiB). ``VmHWM`` in ``/proc/self/status`` is the peak of the process's current
address space, which exec replaces, so it is the child's own.
"""

from __future__ import annotations

import resource


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
