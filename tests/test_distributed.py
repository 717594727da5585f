"""Beyond one machine: manifests on a local Ray cluster (resume, retries, the same report as in
process), and training with the batch split over two logical CPU devices."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import shared_path
from ray_faults import FAULT_ENV

from asrkit.cli import EXIT_OK, EXIT_USAGE, main
from asrkit.distributed import DistributedError, RayOptions, ResultStore, evaluate_manifest, run_header
from asrkit.evaluate import evaluate
from asrkit.manifest import read_manifest
from asrkit.models import load_model

# The shipped LiteRT model: trained, loads in seconds without TensorFlow, and its transcript of a clip
# depends on that clip alone.
MODEL = "asrkit-ctc-en-litert"
# Ray workers import ray_faults from here
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A two-CPU local Ray cluster; yields the fault file that, once created, kills the next worker to
    start a shard."""
    ray = pytest.importorskip("ray", reason="needs Ray, the optional extra: pip install 'asrkit[ray]'")
    fault = tmp_path_factory.mktemp("fault") / "kill-next-worker"
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    runtime_env = {
        "env_vars": {FAULT_ENV: str(fault), "PYTHONPATH": path},
        "worker_process_setup_hook": "ray_faults.install",
    }
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, runtime_env=runtime_env)
            break
        except Exception:  # Ray gives its node 30 s to start, which a loaded machine can miss once
            ray.shutdown()
            if attempt == 2:
                raise
    yield fault
    ray.shutdown()


@pytest.fixture(scope="module")
def clips():
    """Ten real clips: fsdd_dev's unseen speaker saying each digit once."""
    return read_manifest(shared_path("splits/fsdd_dev.tsv"))[::50]


@pytest.fixture(scope="module")
def local_report(clips):
    return evaluate(load_model(MODEL), clips, progress=False)


def assert_same_results(report, expected) -> None:
    """Everything but the measured seconds: rows, hypotheses, alignments, corpus figures."""

    def content(r):
        return [(row.utterance, row.hypothesis, row.score, row.duration_s, row.error, row.words) for row in r.rows]

    assert report.model == expected.model
    assert content(report) == content(expected)
    assert report.corpus == expected.corpus
    assert (report.wer_interval, report.cer_interval) == (expected.wer_interval, expected.cer_interval)


def test_ray_gives_the_local_report_and_a_resumed_run_skips_finished_shards(cluster, clips, local_report, tmp_path):
    options = RayOptions(shard_size=3, workers=2)
    report, run = evaluate_manifest(clips, model=MODEL, results=tmp_path, options=options, progress=False)
    assert (run.shards, run.computed, run.resumed, run.retries) == (4, 4, 0, 0)
    assert_same_results(report, local_report)
    assert any(row.hypothesis for row in report.rows)  # real words, not an empty model

    # an interrupted run: two shards never finished, and one was cut off while being written
    shard_files = sorted((tmp_path / "shards").glob("*.jsonl"))
    for lost in shard_files[1:3]:
        lost.unlink()
    (tmp_path / "shards" / f".{shard_files[1].name}.123.partial").write_text('{"index": 3')
    kept = {p: p.stat().st_mtime_ns for p in (shard_files[0], shard_files[3])}
    report, run = evaluate_manifest(clips, model=MODEL, results=tmp_path, options=options, progress=False)
    assert (run.computed, run.resumed, run.resumed_utterances) == (2, 2, 4)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards were read, not run again
    assert report.cached == 4
    assert_same_results(report, local_report)


def test_a_worker_killed_mid_run_is_replaced_and_the_result_is_complete(cluster, clips, local_report, tmp_path):
    cluster.touch()  # the next worker to start a shard kills its own process
    report, run = evaluate_manifest(
        clips, model=MODEL, results=tmp_path, options=RayOptions(shard_size=2, max_retries=1), progress=False
    )
    assert not cluster.exists(), "no worker died: the fault was not injected"
    assert (run.shards, run.computed, run.retries) == (5, 5, 1)
    assert_same_results(report, local_report)


def test_a_shard_out_of_retries_stops_the_run(cluster, clips, tmp_path):
    cluster.touch()
    with pytest.raises(DistributedError, match=r"shard 0 failed 1 time"):
        evaluate_manifest(
            clips,
            model=MODEL,
            results=tmp_path,
            options=RayOptions(shard_size=2, workers=1, max_retries=0),
            progress=False,
        )
    assert not list((tmp_path / "shards").glob("*.jsonl"))


def test_cli_transcribe_and_eval_on_ray_print_what_the_local_engine_prints(cluster, clips, tmp_path, capsys):
    manifest = tmp_path / "clips.tsv"
    manifest.write_text(
        "path\tduration_s\ttranscript\tspeaker\n"
        + "".join(f"{u.audio_path.resolve()}\t{u.duration_s}\t{u.transcript}\t{u.speaker}\n" for u in clips)
    )
    ray_args = ["--engine", "ray", "--results", str(tmp_path / "run"), "--shard-size", "4"]

    assert main(["transcribe", "--manifest", str(manifest), "--model", MODEL]) == EXIT_OK
    local = capsys.readouterr().out
    assert main(["transcribe", "--manifest", str(manifest), "--model", MODEL, *ray_args]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == local and len(out.splitlines()) == len(clips)
    assert "3 shards (0 resumed, 3 run now" in err

    # eval on the same results folder finds every shard transcribed already
    assert (
        main(["eval", str(manifest), "--model", MODEL, "--no-cache", "--json", str(tmp_path / "local.json")]) == EXIT_OK
    )
    assert main(["eval", str(manifest), "--model", MODEL, "--json", str(tmp_path / "ray.json"), *ray_args]) == EXIT_OK
    assert "3 shards (3 resumed, 0 run now" in capsys.readouterr().err

    def without_timings(name: str) -> dict:
        data = json.loads((tmp_path / name).read_text())
        data.pop("command"), data.pop("rtf")
        for row in data["rows"]:
            row.pop("rtf")
        return data

    assert without_timings("ray.json") == without_timings("local.json")


def test_a_results_folder_of_another_run_is_refused(tmp_path, clips):
    ResultStore(tmp_path, header=run_header(clips, identity="m-1", shard_size=4))
    with pytest.raises(DistributedError, match="another run .*utterances_digest.*--results"):
        ResultStore(tmp_path, header=run_header(clips[:5], identity="m-1", shard_size=4))
    with pytest.raises(DistributedError, match="model 'm-1' there, 'm-2' now"):
        ResultStore(tmp_path, header=run_header(clips, identity="m-2", shard_size=4))


def test_without_ray_the_engine_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    manifest = tmp_path / "m.tsv"
    manifest.write_text("path\ttranscript\na.flac\thello\n")
    assert (
        main(["eval", str(manifest), "--model", MODEL, "--engine", "ray", "--results", str(tmp_path / "r")])
        == EXIT_USAGE
    )
    assert "pip install 'asrkit[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written for a run that cannot start


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf

    # two logical CPU devices, which must exist before TensorFlow starts
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from asrkit.data.dataset import FeatureCache
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.models.keras_ctc import build_network
    from asrkit.train import TrainConfig, ctc_loss, distribution, replicated_step, train

    MODEL = CTCModelConfig(conv_channels=8, rnn_layers=1, rnn_units=16, lookahead_frames=2, dropout=0.0)
    rng = np.random.default_rng(0)
    x = rng.normal(-5, 2, (5, 100, 80)).astype(np.float32)  # 5 utterances: 3 on one replica, 2 on the other
    y = np.concatenate([np.full((5, 1), MODEL.output_length(100)), rng.integers(3, 9, (5, 3))], axis=1).astype(np.int32)

    def one_step(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            network = build_network(MODEL, feature_mean=np.full(80, -5.0), feature_std=np.full(80, 2.0))
            network.compile(optimizer=keras.optimizers.SGD(0.1), loss=ctc_loss)
            loss = replicated_step(network, x, y)
        return loss, network.get_weights()

    mirrored = distribution("mirrored")
    slices = []
    split = mirrored.experimental_distribute_values_from_function
    def recorded(value_fn):
        value = split(value_fn)
        slices.append([(int(t.shape[0]), t.device.split("/")[-1]) for t in value[0].values])
        return value
    mirrored.experimental_distribute_values_from_function = recorded
    single_loss, single = one_step(distribution("none"))
    mirrored_loss, replicated = one_step(mirrored)

    # the whole loop (evaluation, checkpoint, saving) under the strategy
    feats = [rng.normal(-5, 2, (120, 80)).astype(np.float16) for _ in range(6)]
    labels = [np.array([3 + i % 5, 4, 3 + i % 5], np.int16) for i in range(6)]
    cache = FeatureCache(np.concatenate(feats), np.cumsum([0] + [len(f) for f in feats]),
                         np.concatenate(labels), np.cumsum([0] + [len(l) for l in labels]))
    config = TrainConfig(steps=4, warmup_steps=2, peak_lr=1e-3, log_every=2, eval_every=4, checkpoint_every=4,
                         max_batch_size=2, max_batch_frames=4000)
    with mirrored.scope():
        train(sys.argv[1], cache=cache, dev=[(np.zeros(8000, np.float32), "a")], model_config=MODEL, config=config,
              progress=False)
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync, "slices": slices, "losses": [single_loss, mirrored_loss],
        "weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, replicated)),
    }))
""")


@pytest.mark.timeout(240)
def test_mirrored_strategy_splits_each_batch_over_two_devices_and_scales_the_learning_rate(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(run_dir)], capture_output=True, text=True, env=env, timeout=220
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # one slice per device, uneven as the batch is; then train()'s 4 steps, each split the same way
    assert result["slices"][0] == [[3, "device:CPU:0"], [2, "device:CPU:1"]]
    assert len(result["slices"]) == 5
    assert all([device for _, device in step] == ["device:CPU:0", "device:CPU:1"] for step in result["slices"])
    # the replicas' summed gradients are the whole batch's: the same step as on one device
    assert result["losses"][0] == pytest.approx(result["losses"][1], rel=1e-5)
    assert result["weight_difference"] < 1e-5
    # each replica keeps the single-device batch; the global batch and peak rate double
    saved = json.loads((run_dir / "train_config.json").read_text())
    assert (saved["peak_lr"], saved["max_batch_size"], saved["max_batch_frames"]) == (2e-3, 4, 8000)
    assert [
        json.loads(line)["step"] for line in (run_dir / "history.jsonl").read_text().splitlines() if "loss" in line
    ] == [2, 4]
    assert load_model(run_dir / "last").card.metrics["step"] == 4
