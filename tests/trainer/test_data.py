"""Dataset loaders: built-ins, MNIST IDX, CSV/NPY/Parquet, and their errors."""

import gzip
import struct

import numpy as np
import pytest

from gen.runtime.errors import InputError as TrainError
from gen.runtime.readers import read_idx
from gen.trainer.data import grid25, load_dataset, ring8


def write_idx(path, array, code=0x08):
    header = struct.pack(">HBB", 0, code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(">u1").tobytes())


def test_digits():
    data = load_dataset("digits")
    assert data.x.shape == (1797, 1, 8, 8) and data.y.shape == (1797,)
    assert data.kind == "image" and data.raw_range == (0.0, 16.0)


def test_mixtures_match_the_protocol():
    ring = ring8(n=4000, seed=1)
    radius = np.linalg.norm(ring.x, axis=1)
    assert abs(radius.mean() - 2.0) < 0.01 and radius.std() < 0.05
    assert len(np.unique(ring.y)) == 8
    grid = grid25(n=5000, seed=1)
    centres = np.round(grid.x / 2) * 2
    assert set(np.unique(centres)) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert (grid.x - centres).std() == pytest.approx(0.05, rel=0.1)


def test_mnist_idx_with_labels_beside(tmp_path):
    images = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 256
    write_idx(tmp_path / "tiny-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "tiny-labels-idx1-ubyte.gz", np.array([7, 1, 7]))
    data = load_dataset(str(tmp_path / "tiny-images-idx3-ubyte.gz"))
    assert data.x.shape == (3, 1, 4, 5) and data.kind == "image"
    np.testing.assert_array_equal(data.x[1, 0], images[1])
    np.testing.assert_array_equal(data.y, [7, 1, 7])
    assert data.raw_range == (0.0, 255.0)


def test_idx_errors(tmp_path):
    (tmp_path / "bad-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(TrainError, match="bad magic number"):
        read_idx(tmp_path / "bad-idx3-ubyte")
    write_idx(tmp_path / "short-idx3-ubyte", np.zeros((2, 2, 2)))
    data = (tmp_path / "short-idx3-ubyte").read_bytes()
    (tmp_path / "short-idx3-ubyte").write_bytes(data[:-3])
    with pytest.raises(TrainError, match=r"header says \(2, 2, 2\) but holds 5 values"):
        read_idx(tmp_path / "short-idx3-ubyte")


def test_csv_with_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4\n")
    data = load_dataset(str(path), label_column="label")
    np.testing.assert_array_equal(data.x, [[1, 2], [3, 4]])
    assert data.names == ["a", "b"]
    np.testing.assert_array_equal(data.y, [0, 1])
    with pytest.raises(TrainError, match="label column 'y' not found"):
        load_dataset(str(path), label_column="y")


@pytest.mark.parametrize("text, message", [
    ("1,2\n3,x\n", "line 2, column 2: expected a number, got 'x'"),
    ("1,2\n3\n", "line 2: expected 2 values, got 1"),
    ("", "file is empty"),
    ("1,2\nnan,3\n", "line 2, column 1: value is nan"),
])
def test_csv_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TrainError, match=message):
        load_dataset(str(path))


def test_npy_images_and_tabular(tmp_path):
    np.save(tmp_path / "img.npy", np.ones((4, 1, 3, 3), dtype=np.float32))
    data = load_dataset(str(tmp_path / "img.npy"))
    assert data.kind == "image" and data.shape == [1, 3, 3] and data.x.shape == (4, 1, 3, 3)
    np.save(tmp_path / "tab.npy", np.ones((4, 5)))
    assert load_dataset(str(tmp_path / "tab.npy")).kind == "tabular"
    np.save(tmp_path / "vec.npy", np.ones(5))
    with pytest.raises(TrainError, match=r"expected a numeric \(N, D\) or \(N, C, H, W\) array, got shape \(5,\)"):
        load_dataset(str(tmp_path / "vec.npy"))


def test_unknown_inputs(tmp_path):
    with pytest.raises(TrainError, match="not a built-in dataset"):
        load_dataset("cifar10")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(TrainError, match="unsupported data format"):
        load_dataset(str(tmp_path / "x.json"))


def test_training_and_serving_read_a_file_to_the_same_arrays(tmp_path):
    """One set of readers: the `id,2020,2021` header that once trained but was refused by
    `gen score` is a header on both paths, and every format gives the same rows."""
    from gen.runtime.readers import read_rows

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = np.array([[1, 2, 3], [4.5, 5, 6], [7, 8, 9e3]], dtype=np.float32)
    files = {"h.csv": "id,2020,2021\n1,2,3\n4.5,5,6\n7,8,9e3\n", "plain.csv": "1,2,3\n4.5,5,6\n7,8,9e3\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    np.save(tmp_path / "r.npy", rows.astype(np.float64))
    pq.write_table(pa.table({"id": rows[:, 0], "2020": rows[:, 1], "2021": rows[:, 2]}), tmp_path / "r.parquet")
    for name in ("h.csv", "plain.csv", "r.npy", "r.parquet"):
        trained = load_dataset(str(tmp_path / name)).x
        served = read_rows(tmp_path / name, [3])
        np.testing.assert_array_equal(trained, rows)
        np.testing.assert_array_equal(served, rows)
    assert load_dataset(str(tmp_path / "h.csv")).names == ["id", "2020", "2021"]


def test_values_beyond_float32_are_refused_on_both_paths(tmp_path):
    from gen.runtime.readers import read_rows

    (tmp_path / "big.csv").write_text("1,2,3\n1e308,5,6\n")
    for read in (lambda p: load_dataset(str(p)), lambda p: read_rows(p, [3])):
        with pytest.raises(TrainError, match="line 2, column 1: value is 1e308"):
            read(tmp_path / "big.csv")


def test_folder_as_data_is_one_line(tmp_path):
    with pytest.raises(TrainError, match="no .csv, .npy, .parquet files found"):  # a folder streams its files
        load_dataset(str(tmp_path))
    np.save(tmp_path / "a.npy", np.zeros((4, 2), np.float32))
    with pytest.raises(TrainError, match="a folder or glob of files is streamed"):
        load_dataset(str(tmp_path))


def test_label_column_only_where_columns_have_names(tmp_path):
    with pytest.raises(TrainError, match="--label-column 'y': only a CSV or Parquet file has named columns"):
        load_dataset("digits", label_column="y")
    np.save(tmp_path / "t.npy", np.zeros((4, 3)))
    with pytest.raises(TrainError, match="only a CSV or Parquet file"):
        load_dataset(str(tmp_path / "t.npy"), label_column="y")
