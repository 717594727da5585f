"""A plain (non-editable) install works away from the source tree: the wheel of this checkout, installed into a
fresh virtual environment and run from another folder, transcribes a real clip with the default model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import JFK, shared_path

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from: the package, its metadata and the app's template (pyproject's data-files).
SOURCES = ("asrkit", "share", "pyproject.toml", "README.md")
# Building and installing take ~3 s, importing TensorFlow and transcribing 11 s of speech ~25 s on two cores.
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The ``python`` of a fresh virtual environment holding asrkit's wheel; its dependencies are this
    environment's, seen through a path entry (so this environment's editable asrkit is not)."""
    work = tmp_path_factory.mktemp("install")
    # built from a copy: the build writes its egg-info and build/ beside the sources
    tree = work / "tree"
    tree.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, tree / name)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(work / "dist"),
            str(tree),
        ]
    )
    (wheel,) = (work / "dist").glob("asrkit-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    # a plain path line: the folder joins sys.path, but the .pth files in it (the editable finder) never run
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    return python


def run(command: list[str], *, cwd: Path | None = None) -> str:
    # the default model and the shipped folder, whatever this shell points them at
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASR_MODEL_NAME", "ASR_MODELS_DIR")}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_carries_the_shipped_models(installed):
    from asrkit.models import SHIPPED_DIR

    (wheel,) = installed.parents[2].glob("dist/asrkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"asrkit/models/shipped/{p.relative_to(SHIPPED_DIR).as_posix()}"
        for p in SHIPPED_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped and shipped <= names, sorted(shipped - names)


def test_an_installed_asrkit_transcribes_with_the_default_model_from_another_folder(installed, tmp_path):
    clip = shared_path(JFK)
    where = run(
        [
            str(installed),
            "-c",
            "import asrkit, asrkit.models as m; print(asrkit.__file__); print(*(e.name for e in m.available_models()))",
        ],
        cwd=tmp_path,
    )
    module, names = where.splitlines()
    assert Path(module).is_relative_to(installed.parents[1]) and not Path(module).is_relative_to(ROOT)
    assert {"whisper-tiny.en", "asrkit-ctc-en", "asrkit-ctc-en-litert"} <= set(names.split())
    out = run([str(installed.parent / "asrkit"), "transcribe", str(clip)], cwd=tmp_path)
    assert "ask not what your country can do for you" in out.lower()
