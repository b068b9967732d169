"""notebooks/results.ipynb runs end to end in a real Jupyter kernel on a real sweep's store."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, sweep_cli
from tests.requirements import require_module

NOTEBOOK = REPO / "notebooks" / "results.ipynb"


def _outputs(nb: Any) -> tuple[str, list[bytes]]:
    """All text the code cells printed or displayed, and the PNG images they displayed."""
    texts: list[str] = []
    images: list[bytes] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts.append(data.get("text/plain", ""))
            if "image/png" in data:
                images.append(base64.b64decode(data["image/png"]))
    return "\n".join(texts), images


def test_the_notebook_is_stored_clean_and_explained() -> None:
    """No outputs or execution counts in git; markdown explains the steps; valid nbformat 4."""
    nbformat = require_module("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(not c.outputs and c.execution_count is None for c in code), (
        "clear the notebook's outputs before committing it"
    )
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 5
    assert 'os.environ.get("SWEEPER_STORE", "../configs/.sweeper")' in code[0].source


@pytest.mark.ray
@pytest.mark.slow
def test_the_notebook_runs_on_a_real_sweep(
    example_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweep the example for real, execute the notebook on its store with a real kernel, and
    find the sweep's best execution, a PNG plot and the best model's lineage in the outputs."""
    import nbformat
    from nbclient import NotebookClient

    store = example_project / ".sweeper"
    env = {"SWEEPER_STORE": str(store)}
    proc = sweep_cli(
        *("train-model", "--trials", "6", "--runtime", "local", "--metric", "loss", "--json"),
        cwd=example_project,
        env=env,
        timeout=240,
        check=True,
    )
    summary = json.loads(proc.stdout)
    best_id = summary["best"]["execution_id"]
    assert summary["trials"]["complete"] == 6

    monkeypatch.setenv("SWEEPER_STORE", str(store))
    monkeypatch.delenv("SWEEPER_SWEEP_ID", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails
    nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for a look when the test fails

    text, images = _outputs(nb)
    assert f"sweep {summary['sweep_id']}: step train-model, minimize loss" in text
    assert f"best execution: {best_id}" in text
    assert images and all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    assert len(images[0]) > 10_000, "the metric-curve plot looks empty"
    # the lineage of the best model: model.npz, made by the best execution from the dataset
    assert "model.npz datum://" in text
    assert f"{best_id} (train-model, complete) [output model.npz]" in text
    assert "<- dataset datum://" in text
    assert f"best trial {summary['best']['trial_number']} ran execution {best_id}" in text
