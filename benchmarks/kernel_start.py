"""Time a grading kernel's start in its bubblewrap sandbox and without it.

    .venv/bin/python benchmarks/kernel_start.py [--repeats 5]

Starts the kernel the grader starts (grading.sandbox's kernel spec, IPC sockets), waits
for its first reply, then imports what a ps03 notebook imports (numpy, torch, convlib and
its checks), alternating sandboxed and unsandboxed starts. Prints the medians; never a
pass/fail test. Needs bubblewrap (`bwrap`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def start_once(sandbox: bool, work: Path) -> tuple[float, float]:
    from grading.execute import SandboxedKernelManager

    os.environ["JUPYTER_PATH"] = str(work / ("sandboxed" if sandbox else "plain"))
    manager = SandboxedKernelManager(kernel_name="python3")
    started = time.perf_counter()
    await manager.start_kernel(cwd=str(work / "run"))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        ready = time.perf_counter()
        await client.execute_interactive("import numpy, torch, convlib, convlib.checks", timeout=120)
        return ready - started, time.perf_counter() - ready
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from grading.sandbox import kernel_spec, unavailable

    reason = unavailable()
    if reason:
        raise SystemExit(f"cannot measure the sandbox here: {reason}")
    os.environ["PYTHONPATH"] = str(ROOT)  # as grading.run gives the launcher
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "run").mkdir()
        for name, sandbox in (("sandboxed", True), ("plain", False)):
            spec = work / name / "kernels" / "python3"
            spec.mkdir(parents=True)
            (spec / "kernel.json").write_text(json.dumps(kernel_spec(4096, sandbox)))
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(args.repeats):
            for sandbox in (True, False):
                times[sandbox].append(asyncio.run(start_once(sandbox, work)))
    for sandbox in (True, False):
        ready = statistics.median(t[0] for t in times[sandbox])
        imports = statistics.median(t[1] for t in times[sandbox])
        print(f"{'sandboxed' if sandbox else 'no sandbox'}: first reply after {ready:.2f} s, "
              f"then numpy, torch and convlib imported in {imports:.2f} s (medians of {args.repeats})")
    added = statistics.median(t[0] for t in times[True]) - statistics.median(t[0] for t in times[False])
    print(f"the sandbox adds {added:.2f} s to a kernel's start")


if __name__ == "__main__":
    main()
