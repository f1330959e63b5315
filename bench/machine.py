"""The machine a benchmark ran on, worded the same way in every section of BENCHMARKS.md, and the throw-away home
the benchmarks that run flows work in."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path


def isolated_home() -> Path:
    """A fresh temporary Metaflow (and BentoML) home, set in this process's environment, which the flows it starts
    inherit; your ``.metaflow`` is not touched. Call it before Metaflow is first imported: it reads its
    configuration at import."""
    home = Path(tempfile.mkdtemp(prefix="stockcast-bench-"))
    os.environ.update(
        {
            "USERNAME": os.environ.get("USERNAME", "bench"),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(home),
            "METAFLOW_CLIENT_CACHE_PATH": str(home / "client-cache"),
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
        }
    )
    (home / ".metaflow").mkdir()
    return home


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


def publish(section: str, out: Path) -> None:
    """Print a benchmark's BENCHMARKS.md section and write it to ``out`` (under bench/results/)."""
    print(section, end="")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(section, encoding="utf-8")
