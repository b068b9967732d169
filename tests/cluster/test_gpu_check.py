"""scripts/gpu-check: a sweep of a small PyTorch step on a real GPU, or one clear line without one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu-check"


def _run(env: dict[str, str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "4"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "PYTHONPATH": str(REPO),
            "GPU_CHECK_OUT": str(tmp_path / "gpu-check.json"),
            **env,
        },
    )


def _nvidia_gpus() -> int:
    """How many NVIDIA GPUs the driver lists (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return proc.stdout.count("GPU ") if proc.returncode == 0 else 0


def _require_torch() -> None:
    """Fail, saying what to install, when this Python cannot import PyTorch.

    Only a missing GPU may skip a test (tests/requirements.py): on a GPU machine a missing
    torch would otherwise pass the check unseen.
    """
    probe = "import torch"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"this machine has an NVIDIA GPU but {sys.executable} cannot import PyTorch: "
            f"install torch with CUDA (pip install torch)\n{proc.stderr.strip()}",
            pytrace=False,
        )


def test_without_a_visible_cuda_device_it_fails_with_one_line(tmp_path: Path) -> None:
    # hides any GPU this machine has, so the check holds on GPU machines too
    proc = _run({"CUDA_VISIBLE_DEVICES": ""}, tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(
        "scripts/gpu-check: error: no CUDA device visible to PyTorch ("
    ), proc.stderr
    assert not (tmp_path / "gpu-check.json").exists()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(1140)  # the check gets 840 s
def test_on_a_real_gpu_torch_sees_the_device_in_every_trial(tmp_path: Path) -> None:
    if _nvidia_gpus() == 0:
        pytest.skip("needs an NVIDIA GPU: none on this machine")
    _require_torch()
    proc = _run({}, tmp_path, timeout=840)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["ok"] and report["torch_saw_the_device"] == 4
    for execution in report["executions"]:
        assert execution["status"] == "complete"
        assert execution["cuda_available"] == 1 and execution["gpu_ids"]
        assert execution["matmul_ms"] > 0
