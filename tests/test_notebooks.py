"""Every notebook runs top to bottom in a fresh kernel, as a user would open it."""

from pathlib import Path

import nbformat
import pytest
from conftest import JFK, SHARED_DATA
from nbclient import NotebookClient

# what each notebook prints when the shared data is there
EXPECTED = {
    "01_quickstart.ipynb": "WER",
    "02_live_streaming.ipynb": "WER",
    "03_error_analysis.ipynb": "corpus WER",
    "04_training.ipynb": "the toy model hears",
    "05_adapt_to_my_voice.ipynb": "your adapted models",
}
# notebooks that draw no figure: the adaptation one shows its view, which waits for a microphone
NO_FIGURE = {"05_adapt_to_my_voice.ipynb"}
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("ASR_EVAL_LIMIT", "12")  # the error-analysis notebook on a small manifest
    monkeypatch.setenv("ASR_USER_DIR", str(tmp_path))  # the adaptation notebook's session folder
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    if path.name in EXPECTED:
        if not (SHARED_DATA / JFK).exists():
            pytest.skip(f"ran without errors; what it prints needs the shared data at {SHARED_DATA}")
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        if path.name not in NO_FIGURE:
            assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
        assert any(EXPECTED[path.name] in o.get("text", "") for o in outputs), (
            f"{EXPECTED[path.name]!r} was not printed"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
