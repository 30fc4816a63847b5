"""Running a test module's ``__main__`` as two CPU ranks, as ``accelerate launch`` runs GPUs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(script: str | Path, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``script out`` on 2 ranks through torchrun (which ``accelerate launch --num_processes N``
    runs on GPUs; on the CPU accelerate launches several processes through MPI only): each
    rank's ``Accelerator(cpu=True)`` reads its environment and joins a gloo group."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script),
               str(out)]  # fmt: skip
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
