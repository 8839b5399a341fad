"""A converter killed with SIGKILL leaves nothing that looks finished, and
`--resume` finishes the job with output identical to an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from data_prep import synthetic
from tests.helpers import ROOT, last_error_line, run_cli

pytestmark = pytest.mark.slow  # trains or exports


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw256")
    synthetic.generate_dataset(str(out), num_train=160, num_test=0, size=256, seed=1)
    return out


def _convert_args(raw, out, *extra):
    return [
        "-m",
        "data_prep",
        "convert",
        "--csv",
        raw / "train.csv",
        "--images",
        raw / "train",
        "--out",
        out,
        "--shards",
        16,
        "--workers",
        1,
        "--val-fraction",
        0.2,
        "--seed",
        4,
        *extra,
    ]


def _dataset_files(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _kill_after_first_shard(raw, out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, *map(str, _convert_args(raw, out))],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and any(p.suffix == ".tfrecord" for p in out.iterdir()):
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the converter finished before it could be killed"


def test_resume_after_kill_gives_identical_output(raw, tmp_path):
    complete = tmp_path / "complete"
    run_cli(*_convert_args(raw, complete))
    killed = tmp_path / "killed"
    _kill_after_first_shard(raw, killed)

    assert not (killed / "dataset.json").exists()
    finished = [p for p in killed.iterdir() if p.suffix == ".tfrecord"]
    assert 1 <= len(finished) < 32
    for shard in finished:  # a shard under its final name is whole
        assert shard.read_bytes() == (complete / shard.name).read_bytes()

    again = run_cli(*_convert_args(raw, killed), check=False)
    assert again.returncode == 1
    assert last_error_line(again) == (
        f"error: {killed}: holds an unfinished conversion; pass --resume "
        "(same arguments) to finish it, or --overwrite to start again"
    )
    other = run_cli(*_convert_args(raw, killed, "--resume", "--shards", 8), check=False)
    assert last_error_line(other) == (
        f"error: {killed}: holds an unfinished conversion; it was started with "
        "different arguments or inputs; rerun it with its own, or pass --overwrite"
    )

    run_cli(*_convert_args(raw, killed, "--resume"))
    assert _dataset_files(killed) == _dataset_files(complete)
    assert not (killed / ".convert").exists()


def _children(pid):
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except FileNotFoundError:
        return []


def _gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [
            pid
            for pid in pids
            if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
        ]
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads child processes from /proc")
def test_sigterm_stops_a_conversion_in_one_line_and_no_worker_outlives_its_parent(raw, tmp_path):
    out = tmp_path / "data"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    for stop in (signal.SIGTERM, signal.SIGKILL):
        # 64 images a shard at zlib level 9: about a second of work each, however fast the workers start.
        args = _convert_args(raw, out, "--resume", "--shards", 2, "--png-compression", 9)
        args[args.index("--workers") + 1] = 2
        process = subprocess.Popen(
            [sys.executable, *map(str, args)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not list(out.glob("*.tfrecord.tmp")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # until a worker is writing a shard
        workers = _children(process.pid)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (128 + stop, -stop), stderr
        if stop == signal.SIGTERM:
            assert process.returncode == 128 + signal.SIGTERM
            assert stderr.strip().splitlines()[-1] == (
                "error: stopped by SIGTERM; the finished shards are kept: rerun the same command with --resume to "
                "finish the conversion"
            )
        # Gone at once, not at the end of the shard each was writing.
        assert _gone(workers, seconds=1.5), f"workers {workers} outlived their parent ({stop.name})"
    run_cli(*_convert_args(raw, out, "--resume", "--shards", 2, "--png-compression", 9))
    assert (out / "dataset.json").exists()
