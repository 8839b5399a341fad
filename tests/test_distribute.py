"""One training command for every strategy: the automatic choice and the
errors of impossible requests, how workers share the input, MirroredStrategy
over logical CPU devices against the default strategy, two real workers under
MultiWorkerMirroredStrategy (killed, restarted, one export), and the TPU path
with its resolver mocked."""

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from unittest import mock

import keras
import pytest
import tensorflow as tf

from protein_location.core import device_precision
from protein_location.core.errors import TrainError, naming_flags
from protein_location.data import input_reader
from protein_location.training import checkpoints, config as config_lib, distribute
from tests.helpers import ROOT, convert_synthetic, last_error_line, run_cli

# float32 pinned: these tests compare numbers across strategies and workers,
# which a CPU with native bfloat16 (device_precision.default_precision) would blur.
TINY = ["--batch-size", 8, "--width", 0.125, "--size", 32, "--precision", "float32"]
FILE, DATA, OFF = (
    tf.data.experimental.AutoShardPolicy.FILE,
    tf.data.experimental.AutoShardPolicy.DATA,
    tf.data.experimental.AutoShardPolicy.OFF,
)


def _tf_config(workers, chief=0):
    cluster = {"worker": [f"127.0.0.1:{2220 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["127.0.0.1:2219"]
    return {"cluster": cluster, "task": {"type": "worker", "index": 0}}


def _cluster(workers, chief=0):
    """A cluster resolver, as `distribute.read_tf_config` returns one."""
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(_tf_config(workers, chief)["cluster"]), task_type="worker", task_id=0
    )


def _history(run):
    return list(csv.DictReader((run / "history.csv").open()))


@pytest.fixture(scope="module")
def one_shard_dir(synthetic_dir, tmp_path_factory):
    """The tiny synthetic dataset as one train and one val shard."""
    return convert_synthetic(synthetic_dir, tmp_path_factory.mktemp("tfrecords") / "one-shard", num_shards=1)


@pytest.fixture(scope="module")
def odd_val_dir(synthetic_dir, tmp_path_factory):
    """One shard per split, 31 train and 17 val examples: with a global batch
    of 8 over 2 replicas the last val batch holds 1 example, fewer than the replicas."""
    from data_prep import convert

    out = tmp_path_factory.mktemp("tfrecords") / "odd-val"
    convert.convert(
        str(synthetic_dir / "train"),
        str(out),
        csv_path=str(synthetic_dir / "train.csv"),
        val_fraction=0.35,
        num_shards=1,
        seed=0,
    )
    assert json.loads((out / "dataset.json").read_text())["splits"]["val"]["num_examples"] == 17
    return out


# The choice of strategy and the requests that cannot run.


def test_auto_picks_tpu_then_multiworker_then_mirrored_then_default():
    choose = distribute.choose_strategy
    assert choose("auto", tpu="hpa-tpu", tf_config=_cluster(2), num_gpus=8) == "tpu"
    assert choose("auto", tf_config=_cluster(2), num_gpus=8) == "multiworker"
    assert choose("auto", tf_config=_cluster(1, chief=1)) == "multiworker"  # a chief and a worker: two machines
    assert choose("auto", tf_config=_cluster(1), num_gpus=2) == "mirrored"  # one worker: not multi-worker
    assert choose("auto", num_gpus=1) == "mirrored"
    assert choose("auto", replicas=2) == "mirrored"  # a machine without GPUs split into logical CPUs
    assert choose("auto") == "default"
    for kind in ("default", "mirrored"):
        assert choose(kind, num_gpus=4) == kind
    assert choose("multiworker", tf_config=_cluster(1)) == "multiworker"


def test_impossible_strategy_requests_name_the_argument_which_the_command_line_prints_as_its_flag():
    cases = [
        (dict(strategy="tpu"), "--strategy tpu needs --tpu NAME (the Cloud TPU's name, or local on a TPU VM)"),
        (
            dict(strategy="mirrored", tpu="hpa-tpu"),
            "--tpu hpa-tpu needs --strategy tpu (or auto), got --strategy mirrored",
        ),
        (
            dict(strategy="multiworker"),
            ("--strategy multiworker needs TF_CONFIG naming the cluster and this task (docs/scaling-out.md)"),
        ),
        (dict(strategy="default", replicas=2), "--replicas applies to --strategy mirrored, and this run uses default"),
        (
            dict(strategy="auto", replicas=2, tf_config=_cluster(2)),
            "--replicas applies to --strategy mirrored, and this run uses multiworker",
        ),
        (dict(strategy="mirrored", replicas=0), "--replicas must be at least 1, got 0"),
        (dict(strategy="mirrored", replicas=4, num_gpus=2), "--replicas 4 is more than the 2 visible GPUs"),
        (dict(strategy="gpu"), "--strategy must be one of auto, default, mirrored, multiworker, tpu, got 'gpu'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(TrainError) as error:
            distribute.choose_strategy(**kwargs)
        # The library names the argument, train_keras.py the flag.
        assert naming_flags(error.value, config_lib.flag_names()) == message


def test_malformed_tf_config_is_refused_with_what_was_expected(monkeypatch):
    expected = (
        'TF_CONFIG must look like {"cluster": {"worker": ["host:port", ...]}, '
        '"task": {"type": "worker", "index": 0}}, got '
    )
    cases = [
        (
            "{'cluster': 1}",
            (
                "TF_CONFIG is not valid JSON (Expecting property name enclosed in double quotes: "
                "line 1 column 2 (char 1))"
            ),
        ),
        ('{"cluster": {"worker": ["a:1"]}}', expected + '{"cluster": {"worker": ["a:1"]}}'),
        (
            '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
            expected + '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
        ),
        (
            '{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}',
            "TF_CONFIG: MultiWorkerMirroredStrategy takes chief and worker tasks only, got ps",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
            "TF_CONFIG: task 'worker' index 2 is not in the cluster (worker: 2)",
        ),
    ]
    for raw, message in cases:
        monkeypatch.setenv("TF_CONFIG", raw)
        with pytest.raises(TrainError) as error:
            distribute.read_tf_config()
        assert str(error.value) == message
    monkeypatch.setenv("TF_CONFIG", " ")
    assert distribute.read_tf_config() is None
    monkeypatch.setenv("TF_CONFIG", json.dumps(_tf_config(3)))
    resolver = distribute.read_tf_config()
    assert isinstance(resolver, tf.distribute.cluster_resolver.TFConfigClusterResolver)
    assert distribute.count_workers(resolver) == 3 and (resolver.task_type, resolver.task_id) == ("worker", 0)


def test_cli_refuses_tpu_without_gs_paths(converted_dir, tmp_path):
    result = run_cli(
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        tmp_path / "run",
        "--strategy",
        "tpu",
        "--tpu",
        "hpa-tpu",
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: --data must be a gs:// path with --strategy tpu (the TPU reads and "
        f"writes Cloud Storage only), got {converted_dir}"
    )
    assert not (tmp_path / "run").exists()


def test_cli_refuses_malformed_tf_config(converted_dir, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), TF_CONFIG='{"cluster": []}')
    result = subprocess.run(
        [sys.executable, "train_keras.py", "--data", str(converted_dir), "--model-dir", str(tmp_path / "run")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == (
        'error: TF_CONFIG must look like {"cluster": {"worker": ["host:port", ...]}, '
        '"task": {"type": "worker", "index": 0}}, got {"cluster": []}'
    )


def test_cli_refuses_a_batch_not_divisible_by_the_replicas(converted_dir, tmp_path):
    result = run_cli(
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        tmp_path / "run",
        "--strategy",
        "mirrored",
        "--replicas",
        3,
        "--batch-size",
        8,
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == "error: --batch-size 8 is not divisible by the 3 replicas"


def test_tpu_set_up_follows_tensorflows_order_resolve_connect_initialize_then_the_strategy():
    """No TPU here: TensorFlow's TPU calls are mocks, and what is checked is
    that our code makes them in the order TensorFlow's TPU guide gives (the
    system initialized before the strategy is built), with one resolver."""
    calls = mock.Mock()
    with (
        mock.patch.object(tf.distribute.cluster_resolver, "TPUClusterResolver", calls.resolve),
        mock.patch.object(tf.config, "experimental_connect_to_cluster", calls.connect),
        mock.patch.object(tf.tpu.experimental, "initialize_tpu_system", calls.initialize),
        mock.patch.object(tf.distribute, "TPUStrategy", calls.strategy),
    ):
        strategy = distribute.create_strategy("tpu", tpu="hpa-tpu")
    resolver = calls.resolve.return_value
    assert calls.mock_calls == [
        mock.call.resolve(tpu="hpa-tpu"),
        mock.call.connect(resolver),
        mock.call.initialize(resolver),
        mock.call.strategy(resolver),
    ]
    assert strategy is calls.strategy.return_value
    assert device_precision.default_precision("tpu")[0] == "mixed_bfloat16"
    distribute.check_tpu_paths("gs://bucket/tfrecords/hpa", "gs://bucket/runs/hpa", "gs://bucket/export/hpa")
    with pytest.raises(TrainError) as error:
        distribute.check_tpu_paths("gs://bucket/tfrecords/hpa", "gs://bucket/runs/hpa", "export/hpa")
    assert naming_flags(error.value, config_lib.flag_names()).startswith(
        "--export must be a gs:// path with --strategy tpu"
    )


def test_learning_rate_scales_linearly_from_the_reference_batch():
    assert distribute.scaled_learning_rate(4e-3, 256) == 4e-3
    assert distribute.scaled_learning_rate(4e-3, 1024) == 1.6e-2
    assert distribute.scaled_learning_rate(2.4e-2, 32) == 3e-3  # the demo's rate (Makefile DEMO_LR)


# How the input pipelines (one per worker) share a split.


def test_workers_get_whole_shards_when_there_are_enough_else_every_nth_record():
    assert input_reader.share_input([10, 10, 10, 10], 1, 8) == (OFF, [40], 40)
    assert input_reader.share_input([10, 10, 10, 10], 2, 4) == (FILE, [20, 20], 20)
    assert input_reader.share_input([10, 11, 9], 2, 4) == (FILE, [19, 11], 8)  # the smaller share sets the epoch
    assert input_reader.share_input([25], 2, 4) == (DATA, [13, 12], 12)
    assert input_reader.share_input([10, 10], 3, 2) == (DATA, [7, 7, 6], 6)


@pytest.mark.parametrize("dataset, policy", [("converted_dir", FILE), ("one_shard_dir", DATA)])
def test_each_worker_reads_distinct_examples_in_equal_whole_steps(dataset, policy, request):
    data_dir = request.getfixturevalue(dataset)
    shares = []
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        # One epoch: 4 whole steps of the endless stream (trainer.plan_run's steps_per_epoch).
        batches = list(
            input_reader.make_dataset(
                str(data_dir), "train", 8, 32, training=True, with_ids=True, input_context=context
            ).take(4)
        )
        assert {int(ids.shape[0]) for _, _, ids in batches} == {4}  # the per-replica batch
        shares.append([source_id for _, _, ids in batches for source_id in ids.numpy().tolist()])
    assert len(shares[0]) == len(shares[1]) == 16  # 34 training examples: 17 per worker, 4 whole batches of 4
    assert not set(shares[0]) & set(shares[1])
    assert all(len(set(share)) == len(share) for share in shares)


def test_onednn_conv2d_still_returns_an_empty_batch_unchanged():
    """The upstream defect that makes an empty per-replica batch crash
    (`Incompatible shapes: [0,64,64,4] vs. [64]`): with oneDNN on (the x86
    default) conv2d on an empty batch returns its input's shape. Evaluation
    never gives a replica an empty batch (input.eval_padding) whether or not
    this is fixed. When this test fails, TensorFlow has fixed it: remove this
    test and the oneDNN sentence in docs/fault-tolerance.md."""
    from tensorflow.python.util import _pywrap_util_port  # the flag TensorFlow logs at start-up

    # oneDNN is on by default only on x86 CPUs with AVX512_VNNI, AVX512_BF16 or
    # AMX (TensorFlow's release notes), and never with TF_ENABLE_ONEDNN_OPTS=0.
    if not _pywrap_util_port.IsMklEnabled():
        pytest.skip("oneDNN is off in this process (this CPU, or TF_ENABLE_ONEDNN_OPTS=0)")
    kernel = tf.zeros([3, 3, 4, 32])
    empty = tf.nn.conv2d(tf.zeros([0, 64, 64, 4]), kernel, strides=2, padding="SAME")
    assert empty.shape == (0, 64, 64, 4), (
        f"tf.nn.conv2d on an empty batch now gives {empty.shape}: TensorFlow "
        "fixed it; remove this canary and docs/fault-tolerance.md's oneDNN sentence"
    )
    assert tf.nn.conv2d(tf.zeros([1, 64, 64, 4]), kernel, strides=2, padding="SAME").shape == (1, 32, 32, 32)


@pytest.mark.slow
def test_two_replicas_evaluate_val_as_one_at_the_default_precision(odd_val_dir):
    """The same weights, 17 val examples: the padded 2-replica evaluation and
    prediction (task.make_datasets, evaluator.predict_views) against one replica."""
    result = run_cli("tests/eval_padding_probe.py", odd_val_dir)
    values = json.loads(result.stdout.split("result: ")[-1])
    assert values["precision"] == device_precision.default_precision("mirrored")[0]
    assert values["val_steps"] == 3  # 17 examples in 3 global batches of 8, 7 blanks
    for key, value in values["single"].items():
        assert values["mirrored"][key] == pytest.approx(value, rel=1e-5), key
    assert values["single"]["macro_f1"] > 0  # untrained, probabilities near 0.5: blanks counted would change it
    assert values["predicted"] == {"mirrored": 17, "single": 17} and values["same_labels"]
    assert values["views_max_difference"] < 1e-5


# Real runs.


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_the_default_strategy_and_exports(odd_val_dir, tmp_path):
    """The same global batch of 8 over 2 replicas (4 each) or 1, at the
    machine's default precision, with a last val batch of 1 example: with a
    fixed order (one shard, no shuffling, no augmentation) the histories agree
    (to 1e-5 relative in float32; mixed bfloat16 sums in another order);
    synchronized BatchNormalization keeps the replicas equal."""
    fixed_order = [
        "--epochs",
        2,
        "--batch-size",
        8,
        "--width",
        0.125,
        "--size",
        32,
        "--seed",
        3,
        "--shuffle-buffer",
        1,
        "--no-augment-flips",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    runs = {
        "mirrored": ["--strategy", "mirrored", "--replicas", 2, "--export", tmp_path / "export"],
        "default": ["--strategy", "default"],
    }
    processes = {
        name: subprocess.Popen(
            [
                sys.executable,
                "train_keras.py",
                "--data",
                str(odd_val_dir),
                "--model-dir",
                str(tmp_path / name),
                *map(str, fixed_order),
                *map(str, extra),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, extra in runs.items()
    }
    outputs = {name: process.communicate(timeout=600)[0] for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name]

    mirrored = outputs["mirrored"]
    assert (
        "strategy: MirroredStrategy with 2 replica(s) on /job:localhost/replica:0/task:0/device:CPU:0, "
        "/job:localhost/replica:0/task:0/device:CPU:1" in mirrored
    )
    assert "train 31, val 17 examples at 32px; global batch 8 (4 per replica), 3 steps per epoch" in mirrored
    assert "learning rate: peak 0.0005 = --lr 0.016 x global batch 8 / 256 (linear scaling)" in mirrored
    assert "input: one pipeline, no sharding; each step gives each of the 2 replicas 4 distinct examples" in mirrored
    assert re.search(r"replicas: the \d+ variables' copies on this worker's replicas differ by at most 0\n", mirrored)
    precision = device_precision.default_precision("mirrored")[0]
    tolerance = dict(rel=1e-5, abs=1e-6) if precision == "float32" else dict(abs=1e-2)
    history, reference = _history(tmp_path / "mirrored"), _history(tmp_path / "default")
    assert len(history) == len(reference) == 2
    for row, reference_row in zip(history, reference):
        for key, value in reference_row.items():
            assert float(row[key]) == pytest.approx(float(value), **tolerance), key
    report, reference = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("mirrored", "default"))
    assert (report["strategy"], report["replicas"], report["workers"]) == ("mirrored", 2, 1)
    assert (report["precision"], report["val_examples"], reference["val_examples"]) == (precision, 17, 17)
    assert report["peak_learning_rate"] == 0.0005
    assert (tmp_path / "export/1/saved_model.pb").exists()


def _free_ports(count):
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _start_workers(args, logs):
    """Two worker processes of one cluster on 127.0.0.1, ports picked now."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(len(logs))]}
    processes = []
    for index, log in enumerate(logs):
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONPATH=str(ROOT),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            )
    return processes


def _wait_workers(processes, logs, timeout):
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        _kill(processes)
        outputs = "\n".join(log.read_text() for log in logs)
        pytest.fail(f"the workers did not finish in {timeout}s:\n{outputs}")
    return [process.returncode for process in processes], [log.read_text() for log in logs]


def _kill(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()


def _committed(run):
    """Epochs the chief's backup holds (0 while it is being written for the first time)."""
    try:
        return checkpoints.committed_epochs(str(run))
    except (OSError, tf.errors.OpError):  # a file renamed while it was read
        return 0


def _epoch_summaries(output):
    """The val_loss of every epoch's summary line, as printed."""
    return re.findall(r"val_loss: ([0-9.e+-]+)", output)


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_resume_after_a_kill_and_the_chief_exports_once(converted_dir, tmp_path):
    run, export_dir, epochs = tmp_path / "run", tmp_path / "export", 3
    args = [
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        run,
        "--epochs",
        epochs,
        *TINY,
        "--strategy",
        "multiworker",
        "--export",
        export_dir,
    ]
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    processes = _start_workers(args, logs)
    try:  # kill both (a lost machine stops the whole cluster) once the chief has finished an epoch
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and all(process.poll() is None for process in processes):
            if _committed(run) >= 1:
                break
            time.sleep(0.01)
    finally:
        _kill(processes)
    assert [process.returncode for process in processes] == [-signal.SIGKILL] * 2, "\n".join(
        log.read_text() for log in logs
    )
    done_before = checkpoints.committed_epochs(str(run))
    assert 1 <= done_before < epochs and (run / "backup").is_dir()
    assert not export_dir.exists()

    returncodes, outputs = _wait_workers(_start_workers(args, logs), logs, timeout=420)
    assert returncodes == [0, 0], "\n".join(outputs)
    for index, output in enumerate(outputs):
        assert f"this is worker {index}" in output
        assert (
            "input: AutoShardPolicy.FILE: 2 train shards over 2 workers, whole shards to each; every worker "
            "reads 16 examples per epoch (its share: 17)" in output
        )
        assert "Epoch 1/3" not in output and f"Epoch {done_before + 1}/3" in output  # both restored the backup
    assert _epoch_summaries(outputs[0]) == _epoch_summaries(outputs[1])  # one model, trained in lockstep
    assert len(_epoch_summaries(outputs[0])) == epochs - done_before
    assert "worker: training done; the chief writes the model, report and export" in outputs[1]

    assert [int(row["epoch"]) for row in _history(run)] == list(range(epochs))
    assert sorted(path.name for path in export_dir.iterdir()) == ["1"]
    assert sorted(path.name for path in run.iterdir()) == [
        "best.json",
        "best.weights.h5",
        "history.csv",
        "logs",
        "model.keras",
        "report.json",
        "report.png",
        "run.json",
        "thresholds.json",
    ]
    report = json.loads((run / "report.json").read_text())
    assert (report["strategy"], report["replicas"], report["workers"]) == ("multiworker", 2, 2)


@pytest.mark.slow
@pytest.mark.multiworker
def test_keras_fit_under_two_workers_still_needs_the_shim(tmp_path):
    """keras-team/keras#20585: when the first half fails, upstream is fixed
    and protein_location/training/keras_multiworker.py can go."""
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    probe = "tests/keras_multiworker_probe.py"
    returncodes, outputs = _wait_workers(_start_workers([probe, "upstream"], logs), logs, timeout=180)
    assert returncodes != [0, 0], (
        f"Keras {keras.__version__} runs fit under MultiWorkerMirroredStrategy without "
        "the shim: keras-team/keras#20585 is fixed; remove "
        "protein_location/training/keras_multiworker.py"
    )
    for output in outputs:
        assert "Attempt to convert a value (PerReplica" in output or "Invalid reduction dimension 0" in output, output

    returncodes, outputs = _wait_workers(_start_workers([probe, "shim"], logs), logs, timeout=180)
    assert returncodes == [0, 0], "\n".join(outputs)
    histories = [json.loads(output.split("history: ")[-1]) for output in outputs]
    assert histories[0] == histories[1] and len(histories[0]["loss"]) == 2


def test_default_precision_is_bfloat16_on_tpus_and_cpus_that_compute_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
    )
    assert device_precision.cpu_bfloat16_flags(cpuinfo) == ["avx512_bf16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    assert device_precision.cpu_bfloat16_flags(cpuinfo) == ["amx_bf16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert device_precision.cpu_bfloat16_flags(cpuinfo) == []
    assert device_precision.cpu_bfloat16_flags(tmp_path / "missing") == []  # not Linux

    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512_bf16\n")
    assert device_precision.cpu_vendor(cpuinfo) == "AuthenticAMD"
    assert device_precision.cpu_vendor(tmp_path / "x") is None

    native, amd, intel = ["avx512_bf16"], "AuthenticAMD", "GenuineIntel"
    assert device_precision.default_precision("default", cpu_flags=native, vendor=amd) == (
        "mixed_bfloat16",
        "this AMD CPU computes bfloat16 natively (avx512_bf16), faster than float32; --precision float32 to turn off",
    )
    assert device_precision.default_precision("mirrored", cpu_flags=native, vendor=amd)[0] == "mixed_bfloat16"
    # Measured slower than float32 on an Intel Xeon with AVX512_BF16 and no AMX (docs/benchmarks.md).
    assert device_precision.default_precision("default", cpu_flags=native, vendor=intel) == (
        "float32",
        "avx512_bf16 without AMX on GenuineIntel: bfloat16 slower than float32",
    )
    assert device_precision.default_precision("default", cpu_flags=["avx512_bf16", "amx_bf16"], vendor=intel) == (
        "mixed_bfloat16",
        "this CPU has AMX bfloat16 tiles (amx_bf16); --precision float32 to turn off",
    )
    assert device_precision.default_precision("default", cpu_flags=[], vendor=amd) == (
        "float32",
        "this CPU has no native bfloat16 arithmetic",
    )
    assert device_precision.default_precision("mirrored", num_gpus=2, cpu_flags=native, vendor=amd) == (
        "float32",
        "GPUs: --precision mixed_float16 to use their half-precision units",
    )
    assert device_precision.default_precision("tpu", cpu_flags=[]) == ("mixed_bfloat16", "the TPU's native type")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert device_precision.default_precision("default", cpu_flags=native, vendor=amd)[0] == "float32"
