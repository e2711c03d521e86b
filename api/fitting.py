"""Training from Python on rows in memory: `fit(x, model=..., **options) -> Run`, the same code
path as `gen train` (TrainConfig, then `train`), with the rows handed over instead of read
from a file. A Run is the run folder: export it to a bundle and serve that bundle torch-free.

    import gen
    run = gen.fit(x, model="ae", epochs=20, seed=0)    # x: numpy array, pandas or pyarrow table
    bundle = run.export("artifacts/ae")                # then gen.runtime.load(bundle) anywhere
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gen.runtime.errors import ConfigError, MissingDependency

from gen.trainer.config import TrainConfig
from gen.trainer.data import ARRAY_NAME, Dataset, from_arrays, in_memory


_ONE_AT_A_TIME = threading.Lock()


@dataclass
class Run:
    """A trained run folder (config.yaml, run.json, checkpoint.pt). `temporary`: the folder was
    made by `fit` (no `out` given) and goes with `cleanup()`."""

    folder: Path
    temporary: bool = False
    _info: dict | None = field(default=None, repr=False)
    # The rows `fit` trained on, while this object lives: a quantized export measures its
    # cost on their held-out part.
    _rows: Dataset | None = field(default=None, repr=False)

    @property
    def info(self) -> dict:
        """run.json: the family, the resolved config, metrics, how training stopped, the threshold."""
        if self._info is None:
            self._info = json.loads((self.folder / "run.json").read_text())
        return self._info

    @property
    def family(self) -> str:
        return self.info["family"]

    def summary(self) -> tuple[dict, list[str]]:
        """What `gen train` reports for this run: the JSON summary and its lines of text."""
        from gen.trainer.run_folder import run_summary

        return run_summary(self.folder)

    def export(self, out: str | Path, sign_key: str | Path | None = None, quantize: str | None = None,
               precision: str = "fp32", force: bool = True) -> Path:
        """Write the bundle folder `out` (exporters.onnx_export.export_run: ONNX graphs checked
        and compared with torch on a probe batch); return its path."""
        from gen.exporters.onnx_export import export_run

        if self._rows is None or (quantize is None and precision == "fp32"):  # only a narrow graph reads rows
            export_run(self.folder, out, force=force, sign_key=sign_key, quantize=quantize, precision=precision)
            return Path(out)
        import yaml

        name = yaml.safe_load((self.folder / "config.yaml").read_text())["data"]
        # Under the lock no other fit or export holds a name, so the rows get theirs back.
        with _ONE_AT_A_TIME, in_memory(self._rows, name):
            export_run(self.folder, out, force=force, sign_key=sign_key, quantize=quantize, precision=precision)
        return Path(out)

    def cleanup(self) -> None:
        """Remove a temporary run folder (one `fit` made without `out`), and the folder made for it."""
        if self.temporary:
            shutil.rmtree(self.folder.parent, ignore_errors=True)


def fit(x, model: str = "auto", y=None, *, out: str | Path | None = None, names: list[str] | None = None,
        source: str = ARRAY_NAME, quiet: bool = True, **options) -> Run:
    """Train `model` on rows `x` (numpy (N, D) or (N, [C,] H, W) images, pandas DataFrame,
    pyarrow Table) with labels `y` (optional: with `normal_class`, one class is normal and
    the AUROC is measured on the held-out rows as for a labelled file), and the family's and
    run's options as keywords (`gen train`'s flags: epochs, seed, latent_dim, ...). `out`: the
    run folder (default: a temporary one, see `Run.cleanup`). `source`: where the rows came from
    (a path, a table's name), recorded as the run's data and the bundle's data.source. Same
    rows, options and seed as a `gen train --data FILE` of those rows: the same weights and
    scores, and with `source=FILE` and SOURCE_DATE_EPOCH set, the same bundle byte for byte.
    Fits in one process run one at a time (torch's random state is global); use processes to
    train in parallel."""
    if "data" in options:
        raise ConfigError("fit: the rows are the first argument; `data` is for `gen train` (a file or a built-in name)")
    for key, alone in (("nproc", 1), ("engine", "local"), ("stream", False)):
        if options.get(key, alone) != alone:
            raise ConfigError(f"fit: {key}={options[key]!r}: the rows are in this process's memory; save them to a "
                              "file and use `gen train` for several processes, a Ray cluster or a stream")
    dataset = from_arrays(x, y, names, source)
    temporary = out is None
    folder = Path(tempfile.mkdtemp(prefix="gen-run-")) / "run" if temporary else Path(out)
    try:
        # One fit at a time in a process: torch's random state and thread count are global, so
        # two runs at once would draw from one stream (and not give the seed's weights).
        with _ONE_AT_A_TIME, in_memory(dataset) as spec:
            try:  # the families (TrainConfig reads them) and the loop need torch
                cfg = TrainConfig.make(model=model, data=spec, out=str(folder), quiet=quiet, **options)
                from gen.trainer.distributed import Group
                from gen.trainer.train import train
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] != "torch":
                    raise
                raise MissingDependency("gen.fit trains with torch: pip install 'gen[train]'") from exc
            train(cfg, group=Group())  # this process alone, even inside a torchrun or Ray Train program
    except BaseException:
        if temporary:
            shutil.rmtree(folder.parent, ignore_errors=True)
        raise
    return Run(folder, temporary, _rows=dataset)
