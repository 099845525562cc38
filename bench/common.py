"""Shared helpers of the benchmarks: device name, peak memory of a child process, tiny configs.

The benchmarks are scripts beside this file (``bench/`` is not a package); each sub-benchmark is a function
returning a flat dict of figures, and ``bench/run.py`` runs them and attaches targets.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

BENCH_DIR = Path(__file__).resolve().parent

# The peak comes from VmHWM in /proc/self/status, which starts afresh at exec. ru_maxrss does not: Linux carries
# the forking parent's high-water mark into the child, so every child would report at least the parent's peak.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {bench!r})
from {module} import {function} as fn
start = time.perf_counter()
result = fn(**json.loads({kwargs!r}))
result["child_seconds"] = time.perf_counter() - start
status = Path("/proc/self/status")
hwm = [l for l in status.read_text().splitlines() if l.startswith("VmHWM:")] if status.exists() else []
kib = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result["peak_rss_mib"] = kib / 1024
print("BENCH_RESULT " + json.dumps(result))
"""


def device_name() -> str:
    """A readable name of the compute device: the GPU, or the CPU model with the threads torch uses."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"CPU {model} ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)"


def run_in_child(module: str, function: str, timeout: float = 900, **kwargs: Any) -> dict[str, Any]:
    """Run ``bench/<module>.py:function(**kwargs)`` in a fresh interpreter and return its result.

    A fresh process makes ``ru_maxrss`` the peak of that work alone; the result gains ``peak_rss_mib``
    (resident set high-water mark, MiB) and ``child_seconds``.
    """
    code = _CHILD.format(bench=str(BENCH_DIR), module=module, function=function, kwargs=json.dumps(kwargs))
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT ") :])
    tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
    raise RuntimeError(f"{module}.{function} failed in the child process (exit {completed.returncode}): {tail}")
