"""Start a data-parallel `gen train`: N processes on this machine through torchrun's elastic
agent (`--nproc N`), or N Ray Train workers (`--engine ray`, TorchTrainer) on a local or remote
cluster. Every process runs the ordinary `gen train` (trainer/train.py joins the group that
torchrun or Ray Train started); rank 0 writes the run folder.

A process that fails (killed, out of memory, an error) fails the run: the launcher stops the
others, reports it in one line, and no run folder is written (rank 0 writes it beside the
target and renames it only at the end; a SIGTERM from the agent unwinds that staging folder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import yaml

from gen.runtime.errors import LAUNCH_PREFIX, GenError
from gen.runtime.outputs import check_replaceable, remove_stale_temps, staged_folder

from .config import TrainConfig
from .data import streamed_files
from .stream import layout
from .run_folder import RUN_INFO


class ProcessFailed(GenError):
    """A training process failed; the run was stopped and wrote nothing (exit code 1)."""


def wanted(cfg: TrainConfig) -> bool:
    """Whether this `gen train` starts processes (it is not one of torchrun's already; Ray
    Train's workers call `train` itself, never the command)."""
    return (cfg.run.nproc > 1 or cfg.run.engine == "ray") and "TORCHELASTIC_RUN_ID" not in os.environ


def _options(cfg: TrainConfig) -> dict:
    """The run's whole configuration, for the processes to build it again."""
    return {**cfg.to_dict(), "model": cfg.family.name}


def launch(cfg: TrainConfig, as_json: bool = False) -> Path | None:
    """Run the training in cfg.run.nproc processes (or Ray workers); the run folder's path
    (None where a torchrun child printed the summary itself)."""
    check_replaceable(cfg.run.out, RUN_INFO, "run folder")  # checked here, before any process starts
    files = streamed_files(cfg.run.data, cfg.run.stream)
    if files is not None:  # the columns and the label column, checked once here rather than in each process
        layout(files, cfg.run.label_column)
    if cfg.run.engine == "ray":
        return _on_ray(cfg)
    _local(cfg, as_json)
    return None


def _local(cfg: TrainConfig, as_json: bool) -> None:
    """torchrun's elastic agent, in this process: `python -m gen train --config FILE` in each of
    N processes, rendezvous on a free local port, no restarts."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    n = cfg.run.nproc
    with tempfile.TemporaryDirectory(prefix="gen-launch-") as tmp, _launching(n):
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(_options(cfg), sort_keys=False))
        launch_config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n,
                                     run_id=LAUNCH_PREFIX + uuid.uuid4().hex,
                                     rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                                     monitor_interval=0.2, start_method="spawn")
        args = ["-m", "gen", "train", "--config", str(config)] + (["--json"] if as_json else [])
        try:
            elastic_launch(launch_config, sys.executable)(*args)
        except ChildFailedError as exc:
            remove_stale_temps(Path(cfg.run.out).parent)  # rank 0's staging folder, where kill -9 left it
            rank, failure = exc.get_first_failure()
            raise ProcessFailed(f"rank {rank} of {n} {_how(failure.exitcode)}; the others were stopped and "
                                f"no run folder was written ({cfg.run.out})") from None
        except SignalException as exc:  # the agent's own handler took SIGINT / SIGTERM and stopped them
            remove_stale_temps(Path(cfg.run.out).parent)
            error = ProcessFailed(f"interrupted ({signal.Signals(exc.sigval).name}); the processes were stopped "
                                  f"and no run folder was written ({cfg.run.out})")
            error.exit_code = 128 + int(exc.sigval)
            raise error from None


@contextlib.contextmanager
def _launching(n: int):
    """While the agent runs: one thread per process unless OMP_NUM_THREADS says otherwise (what
    the children inherit), and the agent's own log lines off (gen reports a failure itself);
    both as they were afterwards."""
    threads = os.environ.get("OMP_NUM_THREADS")
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)  # each sets its own level
               if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher"))]
    levels = [logger.level for logger in loggers]
    if threads is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == 2:
        return "stopped on the error above (exit code 2)"
    return f"failed with exit code {code}"


def _ray_worker(config: dict) -> None:
    """One Ray Train worker: the ordinary training into a local folder; rank 0 reports it as
    the checkpoint that the driver copies to --out."""
    import ray.train

    from .train import train

    rank = ray.train.get_context().get_world_rank()
    if os.path.isdir(config["cwd"]):  # relative paths as the driver meant them (a local cluster, a shared disk)
        os.chdir(config["cwd"])
    elif not Path(config["raw"]["data"]).is_absolute():
        from gen.runtime.errors import InputError

        raise InputError(f"--data {config['raw']['data']}: a relative path, and the driver's folder "
                         f"{config['cwd']} is not on this node; give the data's path on storage every node sees")
    with tempfile.TemporaryDirectory(prefix="gen-ray-train-") as tmp:
        raw = {**config["raw"], "out": str(Path(tmp) / "run"), "quiet": True}
        folder = train(TrainConfig.from_dict(raw, where=config["where"]))
        if rank == 0 and folder is not None:
            ray.train.report({"rank": rank}, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report({"rank": rank})


def _on_ray(cfg: TrainConfig) -> Path:
    """Ray Train's TorchTrainer with cfg.run.nproc workers (GPUs when --device cuda); the run
    folder comes back as rank 0's checkpoint and is written to --out whole."""
    try:
        import ray.train
        from ray.train.torch import TorchTrainer
    except ImportError:
        from gen.runtime.errors import MissingDependency

        raise MissingDependency("--engine ray needs Ray Train: pip install 'gen[ray]'") from None
    from gen.pipelines.ray import connect, find_gen_error

    out = Path(cfg.run.out)
    with staged_folder(out, RUN_INFO, "run folder", error=GenError) as staging:
        started = connect(cfg.run.address)
        try:
            # Ray Train's storage: beside --out, which must be on storage every node sees (as for gen score)
            with tempfile.TemporaryDirectory(prefix=".gen-ray-train-", dir=out.parent) as storage:
                raw = _options(cfg)
                trainer = TorchTrainer(
                    _ray_worker, train_loop_config={"raw": raw, "where": "option", "cwd": os.getcwd()},
                    scaling_config=ray.train.ScalingConfig(num_workers=cfg.run.nproc,
                                                           use_gpu=cfg.run.device == "cuda"),
                    run_config=ray.train.RunConfig(name=f"gen-train-{uuid.uuid4().hex[:8]}", storage_path=storage))
                try:
                    result = trainer.fit()
                except Exception as exc:
                    failures = getattr(exc, "worker_failures", None) or {}  # Ray Train's WorkerGroupError
                    cause = find_gen_error(failures[min(failures)] if failures else exc)
                    if cause is not None:  # bad input or options, found in a worker: the same one line
                        raise type(cause)(str(cause)) from None
                    lines = str(exc).strip().splitlines()
                    raise ProcessFailed(f"ray: the training failed ({lines[-1] if lines else type(exc).__name__}); "
                                        f"no run folder was written ({out})") from None
                if result.checkpoint is None:
                    raise ProcessFailed(f"ray: rank 0 reported no run folder; none was written ({out})")
                result.checkpoint.to_directory(str(staging))
        finally:
            if started:
                ray.shutdown()
    return out
