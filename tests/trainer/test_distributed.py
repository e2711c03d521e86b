"""Data-parallel training (issue 25, trainer/distributed.py and trainer/launch.py): two gloo
processes keep one model (the same weights in both after training), `gen train --nproc 2` runs
torchrun's agent and writes one valid run folder from rank 0 alone, and a killed process fails
the run in one line with nothing written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gen.runtime import load
from gen.trainer.distributed import Group, lost_peer


def gen_process(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "gen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_one_process_is_a_group_of_one():
    group = Group()
    assert group.leader and group.mean({"loss": 2.0}) == {"loss": 2.0} and group.broadcast_float(3.5) == 3.5
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:43411: Connection reset by peer")
    assert lost_peer(gloo, Group()) is None  # alone, a RuntimeError is what it is
    lost = lost_peer(gloo, Group(1, 2))
    assert lost is not None and str(lost).startswith("rank 1 of 2: another training process stopped")
    assert lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), Group(0, 2)) is None


def test_nproc_without_a_group_is_refused(tmp_path):
    from gen.runtime import ConfigError
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    with pytest.raises(ConfigError, match="nproc 2: this process is not one of a group"):
        train(TrainConfig.make(model="ae", data="digits", epochs=1, nproc=2, out=str(tmp_path / "r"), quiet=True))
    assert not (tmp_path / "r").exists()


def _replica(rank: int, world: int, store: str, out: str) -> None:
    """One of two processes training the same tiny autoencoder on its share of the rows."""
    from gen.runtime.manifest import DataSpec
    from gen.trainer import registry
    from gen.trainer.config import TrainConfig
    from gen.trainer.distributed import Group
    from gen.trainer.loop import fit_epochs

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # different starting weights: synchronise must make them rank 0's
    cfg = TrainConfig.make(model="ae", data="digits", epochs=2, batch_size=16, hidden=[8], latent_dim=2, quiet=True)
    family = registry.get("ae")
    spec = DataSpec(source="x", kind="tabular", shape=[6])
    options = family.resolve(cfg.options, spec)
    net = family.build(options, spec)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32))
    folder = Path(out) / f"rank{rank}"
    folder.mkdir()
    history, _, _ = fit_epochs(cfg, net, family.trainer(net, options), x, np.random.default_rng(4), "x", folder,
                               group=Group(rank, world))
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, Path(out) / f"state{rank}.pt")
    (Path(out) / f"loss{rank}.txt").write_text(repr(history[-1]["loss"]))
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_keep_one_model(tmp_path):
    torch.multiprocessing.spawn(_replica, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    a, b = (torch.load(tmp_path / f"state{r}.pt", weights_only=True) for r in (0, 1))
    assert a.keys() == b.keys()
    for key in a:  # the same averaged gradients, applied to the same weights
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert (tmp_path / "loss0.txt").read_text() == (tmp_path / "loss1.txt").read_text()  # the mean over both


@pytest.fixture
def digits_csv(tmp_path, digits_rows):
    path = tmp_path / "digits.csv"
    np.savetxt(path, digits_rows, delimiter=",", fmt="%g", header=",".join(f"p{i}" for i in range(64)), comments="")
    return path


def test_nproc_2_writes_one_valid_run_folder_from_rank_0(tmp_path, digits_csv):
    out = tmp_path / "runs" / "ae"
    proc = gen_process("train", "--model", "ae", "--data", digits_csv, "--epochs", 2, "--hidden", 16,
                       "--latent-dim", 3, "--nproc", 2, "--out", out, "--quiet")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.count("run folder:") == 1  # rank 0's summary alone
    assert sorted(p.name for p in out.parent.iterdir()) == ["ae"]  # nothing from rank 1, no temps
    assert "nproc: 2" in (out / "config.yaml").read_text()
    bundle = tmp_path / "bundle"
    done = subprocess.run([sys.executable, "-m", "gen", "export", str(out), "--out", str(bundle)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    model = load(bundle)
    assert model.manifest.config["nproc"] == 2
    scores = model.score(np.loadtxt(digits_csv, delimiter=",", skiprows=1, dtype=np.float32)[:50])
    assert scores.shape == (50,) and np.isfinite(scores).all()


def _training_processes(config_mark: str) -> dict[int, int]:
    """{rank: pid} of the processes whose command line holds `config_mark` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if config_mark not in cmdline or "gen train --config" not in cmdline:
                continue
            items = (entry / "environ").read_bytes().decode().split("\0")
            env = dict(item.split("=", 1) for item in items if "=" in item)
        except OSError:
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the processes through Linux's /proc")
@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_rank_fails_the_run_in_one_line_and_writes_nothing(tmp_path, digits_csv, victim):
    out = tmp_path / "runs" / "ae"
    proc = gen_process("train", "--model", "ae", "--data", digits_csv, "--epochs", 100000, "--nproc", 2,
                       "--out", out, "--quiet", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        ranks = {}
        while time.monotonic() < deadline and len(ranks) < 2:
            time.sleep(0.5)
            ranks = _training_processes("gen-launch-")
            ranks = {r: pid for r, pid in ranks.items() if _parent_chain_has(pid, proc.pid)}
        assert len(ranks) == 2, "the two training processes did not start"
        time.sleep(6)  # into the epochs (torch imported, the group joined)
        os.kill(ranks[victim], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    lines = stderr.strip().splitlines()
    assert lines == [f"error: rank {victim} of 2 was killed by SIGKILL; the others were stopped and no run folder "
                     f"was written ({out})"], stderr
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def _parent_chain_has(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the processes through Linux's /proc")
def test_a_signal_to_the_launcher_stops_the_run_in_one_line(tmp_path, digits_csv):
    out = tmp_path / "runs" / "ae"
    proc = gen_process("train", "--model", "ae", "--data", digits_csv, "--epochs", 100000, "--nproc", 2,
                       "--out", out, "--quiet", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len({r: p for r, p in _training_processes("gen-launch-").items()
                                                   if _parent_chain_has(p, proc.pid)}) < 2:
            time.sleep(0.5)
        time.sleep(6)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines() == [f"error: interrupted (SIGTERM); the processes were stopped and no run "
                                           f"folder was written ({out})"], stderr
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))
    assert not _training_processes("gen-launch-") or all(not _parent_chain_has(p, proc.pid)
                                                         for p in _training_processes("gen-launch-").values())
