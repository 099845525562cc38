"""Benchmark: a training step's time when another busy process shares the cores, per OpenMP wait policy.

torch's OpenMP threads spin while they wait for work (``OMP_WAIT_POLICY`` unset). On a cluster node or a
workstation where another job holds a core, every parallel region then waits for a thread the kernel has
descheduled. The ``clinfuse`` CLI sets ``OMP_WAIT_POLICY=PASSIVE`` (unless exported) for that reason; this
benchmark measures both policies, idle and beside ``competitors`` other training processes (small torch steps
in a loop, default policy, as a neighbouring job would run), on two step sizes: a table
encoder (clinfuse's ``mlp``, 500 inputs, batch 256) and an image encoder (clinfuse's ``cnn``, 24³, batch 16).
Each cell runs in a fresh interpreter, since OpenMP reads the policy when torch loads it.

Run: ``python bench/contention.py [--steps 60] [--competitors 1]`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_STEP = """
import json, sys, time, torch
from clinfuse.encoders.registry import create_encoder
kind, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
if kind == "table":
    net = torch.nn.Sequential(create_encoder("mlp", in_features=500, embed_dim=16, hidden=[64], linear_skip=True),
                              torch.nn.Linear(16, 1))
    x = torch.randn(256, 500)
else:
    net = torch.nn.Sequential(create_encoder("cnn", spatial_dims=3, embed_dim=16), torch.nn.Linear(16, 1))
    x = torch.randn(16, 1, 24, 24, 24)
optimizer = torch.optim.AdamW(net.parameters())
def step():
    loss = net(x).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"ms_per_step": 1000 * (time.perf_counter() - start) / steps}))
"""


def _busy() -> None:
    """Another training job: small multi-threaded torch steps in a loop, with OpenMP's default policy."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    x = torch.randn(128, 256)
    while True:
        net(x).sum().backward()


def _time_steps(kind: str, steps: int, policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    platform_dir = str(Path(__file__).resolve().parents[1] / "platform")
    env["PYTHONPATH"] = os.pathsep.join([platform_dir, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run(
        [sys.executable, "-c", _STEP, kind, str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms_per_step"])


def benchmark_contention(steps: int = 60, competitors: int = 1) -> dict[str, Any]:
    """Milliseconds per training step for each (encoder, wait policy), idle and beside busy processes.

    Args:
        steps: timed steps per cell (after 3 warm-up steps).
        competitors: busy processes started for the "shared" column.

    The headline, ``shared_slowdown_default``, is the worst ratio of the default policy's step time to the
    passive policy's on shared cores; ``idle_cost_passive`` is the worst ratio of passive to default when idle.
    """
    cells: dict[str, dict[str, float]] = {}
    # No competitors (the smoke test's toy size): the idle cells only, so no busy process slows the suite.
    loads = ("idle", "shared") if competitors > 0 else ("idle",)
    for load in loads:
        workers = []
        if load == "shared":
            # Spawned, not forked: a forked child would inherit this process's OpenMP state and environment.
            context = multiprocessing.get_context("spawn")
            workers = [context.Process(target=_busy, daemon=True) for _ in range(competitors)]
            # The neighbour runs with OpenMP's default policy whatever this process was given (make bench sets it).
            saved = os.environ.pop("OMP_WAIT_POLICY", None)
            try:
                for worker in workers:
                    worker.start()
            finally:
                if saved is not None:
                    os.environ["OMP_WAIT_POLICY"] = saved
            time.sleep(3.0)  # past the neighbours' torch import, so they compete from the first timed step
        try:
            for kind in ("table", "image"):
                for label, policy in (("default", None), ("passive", "PASSIVE")):
                    cells[f"{kind}_{load}_{label}_ms"] = _time_steps(kind, steps, policy)
        finally:
            for worker in workers:
                worker.terminate()
                worker.join()
    kinds = ("table", "image")
    return {
        "cores": os.cpu_count(),
        "competitors": competitors,
        "steps": steps,
        **cells,
        "shared_slowdown_default": max(cells[f"{k}_shared_default_ms"] / cells[f"{k}_shared_passive_ms"] for k in kinds)
        if competitors > 0
        else float("nan"),
        "idle_cost_passive": max(cells[f"{k}_idle_passive_ms"] / cells[f"{k}_idle_default_ms"] for k in kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--competitors", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(benchmark_contention(args.steps, args.competitors), indent=2))


if __name__ == "__main__":
    main()
