"""Score Arrow or pandas batches with a bundle: the function every data engine calls.

    scorer = Scorer("bundles/ae", keep_columns=["id"])
    scorer(table)        # pyarrow.Table or RecordBatch -> the same kind, with the scores
    scorer(frame)        # pandas.DataFrame -> pandas.DataFrame

Output columns: the kept columns as they are, then `score`, `normal_quantile`, `flag` (and
`log_p` where the bundle knows its log-partition), the columns `gen score` writes, less the
row `index` (a row's position is not stable across a distributed dataset; keep an id).

A Scorer loads its bundle on first use, once per process, and is pickled without it, so an
engine ships the small Scorer to its workers and each loads (and verifies) the bundle there:
from a path on storage every worker sees, or from the bundle's own bytes (`pack_bundle`),
unpacked into a private temp folder and verified as `gen.runtime.load` does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from gen.runtime.errors import BundleError, InputError, MissingDependency
from gen.runtime.readers import Selection, check_numeric_type, numeric_columns

OUTPUT_COLUMNS = ("score", "normal_quantile", "flag")


def pack_bundle(bundle: str | Path) -> dict[str, bytes]:
    """A bundle's files as {name: bytes} (a bundle is a flat folder of a few small files), to
    ship through an engine's object store; `Scorer` verifies it where it is unpacked."""
    folder = Path(bundle)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a bundle folder")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()}


def unpack_bundle(files: dict[str, bytes], into: Path) -> Path:
    """Write `pack_bundle`'s files into the new folder `into`; names must be plain file names."""
    into.mkdir(parents=True)
    for name, data in files.items():
        if not isinstance(name, str) or not isinstance(data, bytes) or Path(name).name != name \
                or name in ("", ".", ".."):
            raise BundleError(f"shipped bundle: {name!r} is not a plain file name")
        (into / name).write_bytes(data)
    return into


class Scorer:
    """Scores batches with the bundle `bundle` (a folder path, or `pack_bundle`'s bytes).
    `columns` / `keep_columns` select features and copy columns through, as
    `GenModel.score_file` does (names, or text "a,b"); without `columns` every column not
    kept is a feature. `device`, `threads`, `batch_size` and `public_key` are `load`'s."""

    def __init__(self, bundle, columns=None, keep_columns=None, device: str = "auto", threads: int | None = None,
                 batch_size: int | None = None, public_key: str | Path | None = None):
        if type(bundle).__name__ == "ObjectRef":  # pack_bundle's bytes in Ray's object store
            import ray

            bundle = ray.get(bundle)
        self.bundle = bundle if isinstance(bundle, dict) else str(bundle)
        self.selection = Selection.of(columns, keep_columns) or Selection()
        self.device, self.threads, self.batch_size = device, threads, batch_size
        self.public_key = None if public_key is None else str(public_key)
        self._model = None
        self._tmp = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None, "_tmp": None}

    @property
    def model(self):
        """The loaded bundle (loaded and verified on first use in this process)."""
        if self._model is None:
            from gen.runtime import load

            folder = self.bundle
            if isinstance(folder, dict):
                self._tmp = tempfile.TemporaryDirectory(prefix="gen-bundle-")
                folder = unpack_bundle(folder, Path(self._tmp.name) / "bundle")
            self._model = load(folder, device=self.device, threads=self.threads, batch_size=self.batch_size,
                               public_key=self.public_key)
            self._model.require("score")
        return self._model

    def check_keep(self) -> None:
        clash = set(self.selection.keep) & {*OUTPUT_COLUMNS, "log_p"}
        if clash:
            raise InputError(f"keep_columns: {sorted(clash)[0]!r} is also an output column; rename it in the input")

    def output_names(self) -> list[str]:
        log_z = self.model.manifest.scoring.log_partition
        return [*self.selection.keep, *OUTPUT_COLUMNS, *(("log_p",) if log_z is not None else ())]

    def score_table(self, table, where: str = "input batch"):
        """A pyarrow Table (or RecordBatch) of raw rows -> a pyarrow Table of the kept columns
        and the scores; a missing value, NaN or a non-numeric feature column is one line
        naming the row (in this batch) and the column."""
        import pyarrow as pa

        self.check_keep()
        model = self.model
        names = list(table.schema.names)
        width = int(np.prod(model.shape))
        features, kept = self.selection.resolve(names, where, width)
        for j in features:
            check_numeric_type(table.schema.field(j).type, where, j + 1, names[j])
        rows = numeric_columns([table.column(j) for j in features], [names[j] for j in features],
                               [j + 1 for j in features], where)
        n = len(rows)
        if n:
            scores = model._score_rows(rows.reshape(n, *model.shape)).astype(np.float64)
        else:
            scores = np.zeros(0, dtype=np.float64)
        out = {names[j]: table.column(j) for j in kept}
        out.update(score=scores, normal_quantile=np.asarray(model.normal_quantile(scores), dtype=np.float64),
                   flag=scores > model.threshold)
        log_z = model.manifest.scoring.log_partition
        if log_z is not None:
            out["log_p"] = -scores - log_z.value
        return pa.table(out)

    def __call__(self, batch):
        """Score one batch: a pyarrow Table or RecordBatch, a pandas DataFrame, or a dict of
        numpy columns (Ray's "numpy" batches); the answer is of the same kind."""
        try:
            import pyarrow as pa
        except ImportError:
            raise MissingDependency("scoring Arrow batches needs pyarrow: pip install 'gen[parquet]'") from None
        if isinstance(batch, pa.Table):
            return self.score_table(batch)
        if isinstance(batch, pa.RecordBatch):
            table = self.score_table(pa.Table.from_batches([batch])).combine_chunks()
            return pa.RecordBatch.from_arrays([table.column(i).combine_chunks() for i in range(table.num_columns)],
                                              names=table.column_names)
        if isinstance(batch, dict):
            table = self.score_table(pa.table({k: np.asarray(v) for k, v in batch.items()}))
            return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        if type(batch).__name__ == "DataFrame" and hasattr(batch, "to_numpy"):
            return self.score_table(pa.Table.from_pandas(batch, preserve_index=False)).to_pandas()
        raise InputError(f"expected a pyarrow Table or RecordBatch, a pandas DataFrame or a dict of arrays, "
                         f"got {type(batch).__name__}")

    def map_arrow(self, batches):
        """Spark's `mapInArrow`: an iterator of RecordBatches -> an iterator of RecordBatches."""
        for batch in batches:
            yield from self.score_table(_as_table(batch)).to_batches()

    def map_pandas(self, frames):
        """Spark's `mapInPandas`: an iterator of DataFrames -> an iterator of DataFrames."""
        for frame in frames:
            yield self(frame)


def _as_table(batch):
    import pyarrow as pa

    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])

