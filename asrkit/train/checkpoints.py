"""A run's checkpoint (network, optimiser, counters) and weight snapshots, and averaging the snapshots."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras
import numpy as np

from asrkit.models.keras_ctc import WEIGHTS_FILE, KerasCTCModel

CHECKPOINT_FILE = "checkpoint.npz"
# network weights saved with each checkpoint, for averaging (see average_snapshots)
SNAPSHOT_DIR = "snapshots"


def _network_arrays(network: keras.Model) -> dict[str, np.ndarray]:
    """The network's weights as ``network_0``, ``network_1``, ... in a checkpoint or snapshot file."""
    return {f"network_{i}": w for i, w in enumerate(network.get_weights())}


def _save_npz(path: Path, **arrays) -> None:
    """``np.savez`` under a temporary name first, so an interruption never leaves half a file at ``path``."""
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


class Checkpoint:
    """Network and optimiser variables plus loop counters in one ``.npz``, written atomically.

    Plain arrays rather than a framework checkpoint, so a run started on one Keras backend (JAX
    on a GPU machine) resumes on another (TensorFlow here).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, network: keras.Model, optimizer: keras.optimizers.Optimizer, counters: dict) -> None:
        arrays = _network_arrays(network)
        arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
        _save_npz(self.path, counters=json.dumps(counters), **arrays)

    def restore(self, network: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict:
        with np.load(self.path) as data:
            network.set_weights([data[f"network_{i}"] for i in range(len(network.weights))])
            for i, variable in enumerate(optimizer.variables):
                variable.assign(data[f"optimizer_{i}"])
            return json.loads(str(data["counters"]))


def save_snapshot(run_dir: Path, network: keras.Model, step: int, keep: int) -> None:
    folder = run_dir / SNAPSHOT_DIR
    folder.mkdir(exist_ok=True)
    _save_npz(folder / f"step-{step:07d}.npz", **_network_arrays(network))
    for old in sorted(folder.glob("step-???????.npz"))[:-keep]:
        old.unlink()


def average_snapshots(run_dir: str | Path, out: str | Path, *, last: int = 5, name: str | None = None) -> Path:
    """Save a model folder whose weights are the mean of the run's ``last`` latest snapshots.

    Averaging the weights of nearby checkpoints smooths the noise of the last updates, as in
    Vaswani et al. (2017); the architecture and card come from the run's ``best/`` model.

    Usage
    -----
    ::

        average_snapshots("runs/ctc", "models/ctc-avg", last=3)
        # PosixPath('models/ctc-avg')
    """
    run_dir = Path(run_dir)
    files = sorted((run_dir / SNAPSHOT_DIR).glob("step-???????.npz"))[-last:]
    if last < 1 or not files:
        raise ValueError(f"{run_dir / SNAPSHOT_DIR} has no snapshots to average (last={last})")
    if not (run_dir / "best" / WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"{run_dir / 'best'} holds no model: a run saves one at its first dev evaluation")
    model = KerasCTCModel.load(run_dir / "best", device="cpu")
    count = len(model.network.weights)
    total = [np.zeros(w.shape, np.float64) for w in model.network.get_weights()]
    for file in files:
        with np.load(file) as data:
            if len(data.files) != count:
                raise ValueError(f"{file} holds {len(data.files)} arrays, the network {count}: not this run's")
            for i in range(count):
                total[i] += data[f"network_{i}"]
    model.network.set_weights([(t / len(files)).astype(w.dtype) for t, w in zip(total, model.network.get_weights())])
    steps = [int(f.stem.removeprefix("step-")) for f in files]
    card = dataclasses.replace(
        model.card, name=name or Path(out).name, metrics={"step": steps[-1], "averaged_steps": steps}
    )
    return KerasCTCModel(model.network, card).save(out)
