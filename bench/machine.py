"""The machine a benchmark ran on, worded the same way in every section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_machine(**versions: str) -> str:
    """Cores, CPU model, Python and the given packages' versions, such as
    ``2 cores, Intel(R) Xeon(R) Processor; Python 3.11.7, pandas 3.1.1``."""
    packages = "".join(f", {name} {version}" for name, version in versions.items())
    return f"{os.cpu_count()} cores, {_cpu_model()}; Python {platform.python_version()}{packages}"


def describe_load(before: float, after: float) -> str:
    """The one-minute load average around the runs, with a warning when other work shared the machine."""
    busy = max(before, after) > (os.cpu_count() or 1)
    return f"One-minute load average {before:.1f} before and {after:.1f} after the runs" + (
        ": above the core count, so other work shared the machine and wall times are inflated." if busy else "."
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
