"""Batch transcription and evaluation of a manifest on a Ray cluster, resumable shard by shard.

The manifest is cut into shards of ``shard_size`` utterances. Actors that each load the model once
take shards as they free up. A finished shard is written to ``<results>/shards/<n>.jsonl`` as a
temporary file renamed into place, so a shard's file exists only when it is complete, and a run
started again on the same folder skips the shards it finds there. ``<results>/run.json`` says what
the results are of (a digest of the utterances, the model's identity, the shard size); a run of
anything else on that folder is refused. A shard whose actor dies or raises is run again on a fresh
actor, at most ``max_retries`` times.

The hypotheses are scored on the driver by :func:`asrkit.evaluate.build_report`, as the in-process
evaluation scores them, so both engines give the same rows and corpus figures; only the measured
seconds (and so the RTF) differ from run to run.

Ray is an optional extra (``pip install 'asrkit[ray]'``), imported here only when a run starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from asrkit.config import Config
from asrkit.contracts import Transcript
from asrkit.errors import AsrkitError
from asrkit.evaluate import EvalReport, Outcome, build_report, model_identity, transcribe_batches
from asrkit.manifest import Utterance
from asrkit.models import UnknownModelError, resolve_model

RUN_FILE = "run.json"
SHARDS_DIR = "shards"
# Version of the results folder's layout, kept in run.json: a later layout refuses an older folder.
LAYOUT = 1
INSTALL_HINT = "pip install 'asrkit[ray]'"


class DistributedError(AsrkitError, RuntimeError):
    """A distributed run that cannot start or finish: Ray missing, a results folder of another run,
    a shard that failed every retry."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how a manifest is spread over Ray workers."""

    # the cluster: None joins $RAY_ADDRESS when set, else starts a local one for this run; "auto" joins
    # the cluster `ray start --head` made on this machine; "ray://host:10001" a remote one
    address: str | None = None
    # actors holding one model each; each takes one shard at a time
    workers: int = 2
    # utterances per shard: the unit of scheduling, retry and resume
    shard_size: int = 16
    # times a failed shard is run again, on a fresh actor, before the run gives up
    max_retries: int = 2
    # CPUs Ray reserves for each actor: 1 suits the single-threaded backends (PocketSphinx, LiteRT)
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        for name in ("workers", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")


@dataclass(frozen=True)
class RunResult:
    """What a distributed run gave and how it went."""

    # the model's registry name, as its workers loaded it
    model: str
    # False for a model with random weights (its transcripts mean nothing)
    trained: bool
    # one per utterance, in manifest order
    outcomes: tuple[Outcome, ...]
    # shards in the run
    shards: int
    # shards found finished in the results folder, not run again
    resumed: int
    # utterances in those shards
    resumed_utterances: int
    # shards run now
    computed: int
    # shard runs that failed and were started again
    retries: int
    # wall seconds of this run, connecting to the cluster included
    wall_s: float
    # the results folder
    results: Path

    def describe(self) -> str:
        """One line for people: shards run, resumed and retried."""
        return (
            f"{self.shards} shards ({self.resumed} resumed, {self.computed} run now, {self.retries} retried) "
            f"in {self.wall_s:.1f} s; results in {self.results}"
        )


def shard_ranges(count: int, *, shard_size: int) -> list[range]:
    """Indices of each shard: consecutive runs of ``shard_size`` (the last may be shorter).

    Examples
    --------
    >>> shard_ranges(5, shard_size=2)
    [range(0, 2), range(2, 4), range(4, 5)]
    """
    return [range(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def utterances_digest(utterances: Sequence[Utterance]) -> str:
    """A digest of the audio files (absolute paths) and references, in order: what a run is of."""
    digest = hashlib.sha1()
    for u in utterances:
        digest.update(f"{u.audio_path.resolve()}\t{u.transcript}\n".encode())
    return digest.hexdigest()


def model_source(model: str | Path | None, *, config: Config) -> tuple[str, str]:
    """(what each worker loads, the model's identity for run.json).

    A model with a folder is sent as its absolute folder, so every worker loads the files whose digest
    the identity holds; a hub name (``hf:...``, ``keras-hub:...``) is its own identity.
    """
    name = str(model) if model is not None else config.model.name
    try:
        folder = resolve_model(name, config=config).resolve()
    except UnknownModelError:
        if ":" not in name:
            raise
        return name, name
    return str(folder), model_identity(folder)


def default_results(manifest: Path, header: dict) -> Path:
    """``asrkit-runs/<manifest stem>-<digest of the run>``: the same run finds its folder again."""
    key = json.dumps({k: header[k] for k in ("utterances_digest", "model", "shard_size")}, sort_keys=True)
    return Path("asrkit-runs") / f"{manifest.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def run_header(utterances: Sequence[Utterance], *, identity: str, shard_size: int) -> dict:
    """What run.json records: a resume must match every key."""
    return {
        "layout": LAYOUT,
        "utterances_digest": utterances_digest(utterances),
        "utterances": len(utterances),
        "model": identity,
        "shard_size": shard_size,
    }


class ResultStore:
    """A results folder: ``run.json`` and one JSON-lines file per finished shard."""

    def __init__(self, folder: str | Path, *, header: dict) -> None:
        self.folder = Path(folder)
        self.header = header
        run_file = self.folder / RUN_FILE
        if run_file.exists():
            found = json.loads(run_file.read_text(encoding="utf-8"))
            differing = [k for k in header if found.get(k) != header[k]]
            if differing:
                raise DistributedError(
                    f"{self.folder} holds results of another run (its {', '.join(differing)} differ: "
                    + "; ".join(f"{k} {found.get(k)!r} there, {header[k]!r} now" for k in differing)
                    + "); give another --results folder, or delete that one to start afresh"
                )
            self.header = found
        else:
            (self.folder / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
            self._write(run_file, json.dumps(header, indent=2) + "\n")

    def remember_model(self, name: str, trained: bool) -> None:
        """Keep the model's name in run.json, so a run that finds every shard done needs no worker."""
        self.header = {**self.header, "model_name": name, "trained": trained}
        self._write(self.folder / RUN_FILE, json.dumps(self.header, indent=2) + "\n")

    def path(self, shard: int) -> Path:
        return self.folder / SHARDS_DIR / f"{shard:06d}.jsonl"

    def finished(self, shard: int, indices: range) -> bool:
        """Whether the shard's file is there and holds exactly these utterances."""
        try:
            return [r["index"] for r in self.read(shard)] == list(indices)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def read(self, shard: int) -> list[dict]:
        return [json.loads(line) for line in self.path(shard).read_text(encoding="utf-8").splitlines()]

    def write(self, shard: int, records: Sequence[dict]) -> None:
        self._write(self.path(shard), "".join(json.dumps(r) + "\n" for r in records))

    @staticmethod
    def _write(path: Path, text: str) -> None:
        # a reader (a resumed run) sees the whole file or none of it, whenever the writer is stopped
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)


def to_record(index: int, outcome: Outcome) -> dict:
    t = outcome.transcript
    return {
        "index": index,
        "transcript": None if t is None else t.to_dict(),
        "compute_s": outcome.compute_s,
        "error": outcome.error,
    }


def from_record(record: dict) -> Outcome:
    t = record["transcript"]
    return Outcome(None if t is None else Transcript.from_dict(t), compute_s=record["compute_s"], error=record["error"])


class ShardWorker:
    """A Ray actor's state: one loaded model, run over one shard at a time."""

    def __init__(self, model: str, config: Config) -> None:
        from asrkit.models import load_model

        self.model = load_model(model, config=config)
        self.config = config

    def describe(self) -> tuple[str, bool]:
        return self.model.name, self.model.card.trained

    def run(self, items: Sequence[tuple[int, Utterance]]) -> list[dict]:
        """Records of the shard's utterances, given as (manifest index, utterance) pairs."""
        utterances = [u for _, u in items]
        outcomes = [
            o
            for batch in transcribe_batches(
                self.model, utterances, batch_size=self.config.model.batch_size, limits=self.config.limits
            )
            for o in batch
        ]
        return [to_record(i, o) for (i, _), o in zip(items, outcomes)]


def import_ray() -> Any:
    """The ``ray`` module, or an error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DistributedError(f"the ray engine needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def connect(*, address: str | None) -> bool:
    """Join (or start) the cluster unless this process already has; True when this call did, so the
    caller shuts it down again."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    joining = address is not None or bool(os.environ.get("RAY_ADDRESS"))
    # Ray refuses settings of a cluster's own (the dashboard) when joining an existing one
    ray.init(address=address, logging_level=logging.WARNING, **({} if joining else {"include_dashboard": False}))
    return True


def run_manifest(
    utterances: Sequence[Utterance],
    *,
    model: str | Path | None = None,
    results: str | Path | None = None,
    manifest: str | Path = "manifest",
    options: RayOptions = RayOptions(),
    config: Config | None = None,
    progress: bool = True,
) -> RunResult:
    """Transcribe the utterances on Ray workers, shard by shard, skipping shards already in ``results``.

    Parameters
    ----------
    model : str or path, optional
        Registry name, model folder or hub name; default ``config.model.name``. Each worker loads it
        from the same absolute path, so on a cluster of several machines the models folder (and the
        audio) must be at the same path on each (a shared file system or identical images).
    results : path, optional
        The results folder; default ``asrkit-runs/<manifest stem>-<digest of the run>``.
    manifest : path
        Only names the default results folder.

    Raises
    ------
    DistributedError
        Ray is not installed, ``results`` holds another run, or a shard failed ``max_retries + 1`` times.
    """
    config = config or Config.from_env()
    began = time.monotonic()
    ray = import_ray()  # before anything is written: without Ray there is no run to resume
    source, identity = model_source(model, config=config)
    header = run_header(utterances, identity=identity, shard_size=options.shard_size)
    store = ResultStore(results if results is not None else default_results(Path(manifest), header), header=header)
    shards = shard_ranges(len(utterances), shard_size=options.shard_size)
    todo = deque(s for s, indices in enumerate(shards) if not store.finished(s, indices))
    resumed = len(shards) - len(todo)
    resumed_utterances = len(utterances) - sum(len(shards[s]) for s in todo)
    retries = 0
    if todo or "model_name" not in store.header:
        started = connect(address=options.address)
        try:
            retries = _dispatch(
                ray,
                todo,
                shards,
                utterances,
                store=store,
                source=source,
                options=options,
                config=config,
                progress=progress,
            )
        finally:
            if started:
                ray.shutdown()
    outcomes = tuple(from_record(r) for s in range(len(shards)) for r in store.read(s))
    return RunResult(
        model=store.header["model_name"],
        trained=store.header["trained"],
        outcomes=outcomes,
        shards=len(shards),
        resumed=resumed,
        resumed_utterances=resumed_utterances,
        computed=len(shards) - resumed,
        retries=retries,
        wall_s=time.monotonic() - began,
        results=store.folder,
    )


def _dispatch(
    ray: Any,
    todo: deque,
    shards: list[range],
    utterances: Sequence[Utterance],
    *,
    store: ResultStore,
    source: str,
    options: RayOptions,
    config: Config,
    progress: bool,
) -> int:
    """Run the shards in ``todo`` on a pool of actors, retrying failures; returns the retries made."""
    actor_class = ray.remote(num_cpus=options.cpus_per_worker, max_restarts=0)(ShardWorker)
    idle = [actor_class.remote(source, config) for _ in range(max(1, min(options.workers, len(todo))))]
    running: dict[Any, tuple[Any, int]] = {}
    try:
        try:
            name, trained = ray.get(idle[0].describe.remote())
        except ray.exceptions.RayError as err:
            raise DistributedError(f"a worker could not load the model {source}: {err}") from None
        store.remember_model(name, trained)
        # absolute paths: a worker's working directory is not the driver's
        items = [(i, replace(u, audio_path=u.audio_path.resolve())) for i, u in enumerate(utterances)]
        failures: dict[int, int] = {}
        bar = tqdm(total=sum(len(shards[s]) for s in todo), unit="utt", desc=f"ray {name}", disable=not progress)
        while todo or running:
            while todo and idle:
                actor, shard = idle.pop(), todo.popleft()
                running[actor.run.remote(items[shards[shard].start : shards[shard].stop])] = (actor, shard)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, shard = running.pop(ref)
            try:
                records = ray.get(ref)
            except ray.exceptions.RayError as err:  # the actor died, or the shard raised in it
                failures[shard] = failures.get(shard, 0) + 1
                if failures[shard] > options.max_retries:
                    raise DistributedError(
                        f"shard {shard} failed {failures[shard]} time(s); the last error: {err}"
                    ) from None
                # a fresh actor: the old one is dead, or holds a model that just failed
                ray.kill(actor)
                idle.append(actor_class.remote(source, config))
                todo.appendleft(shard)
                continue
            store.write(shard, records)
            idle.append(actor)
            bar.update(len(records))
        bar.close()
        return sum(failures.values())
    finally:
        # at once, not when the handles are collected: a failed run's traceback would keep them (and their
        # CPUs) held, and a second run on the same cluster could not schedule its own
        for actor in [*idle, *(a for a, _ in running.values())]:
            ray.kill(actor)


def evaluate_manifest(
    utterances: Sequence[Utterance],
    *,
    model: str | Path | None = None,
    results: str | Path | None = None,
    manifest: str | Path = "manifest",
    options: RayOptions = RayOptions(),
    config: Config | None = None,
    progress: bool = True,
) -> tuple[EvalReport, RunResult]:
    """:func:`run_manifest`, then the same report as :func:`asrkit.evaluate.evaluate` makes; hypotheses of
    resumed shards count as cached."""
    run = run_manifest(
        utterances, model=model, results=results, manifest=manifest, options=options, config=config, progress=progress
    )
    return build_report(run.model, utterances, run.outcomes, cached=run.resumed_utterances), run
