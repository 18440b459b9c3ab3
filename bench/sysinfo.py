"""Machine facts and process memory for benchmark reports (no psutil: /proc)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def rss_mb(pid: int | None = None) -> float | None:
    """Resident set size of a process in MiB (``VmRSS``); None when gone."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass  # RocksDB deletes files while we walk
    return total


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    import numpy
    import torch

    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import faiss

        facts["faiss"] = faiss.__version__
    except ImportError:
        pass
    try:
        facts["load_avg"] = list(os.getloadavg())  # context for noisy numbers on shared machines
    except OSError:
        pass
    return facts


def device_facts() -> dict[str, str]:
    import torch

    if torch.cuda.is_available():
        return {"type": "cuda", "name": torch.cuda.get_device_name(0)}
    return {"type": "cpu", "name": cpu_model()}
