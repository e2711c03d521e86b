"""Outputs are written atomically: complete files or nothing at all."""

import io

import numpy as np
import pytest

from gen.runtime.errors import InputError
from gen.runtime.outputs import SCORE_DTYPE, ScoreWriter, atomic_path, image_grid, png_bytes, scatter_image


def test_png_decodes_to_the_same_pixels():
    PIL = pytest.importorskip("PIL.Image")
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    for image in (gray, rgb):
        decoded = np.asarray(PIL.open(io.BytesIO(png_bytes(image))))
        np.testing.assert_array_equal(decoded, image)


def test_image_grid_layout():
    images = np.ones((5, 1, 2, 2), dtype=np.float32) * 16
    grid = image_grid(images, (0, 16), pad=1)
    # 5 images -> 3 columns x 2 rows of 2x2 tiles with 1-pixel padding
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1)
    assert grid.max() == 255 and (grid == 255).sum() == 5 * 4


def test_scatter_marks_points():
    image = scatter_image(np.array([[0.0, 0.0], [1.0, 1.0]]), size=11, extent=1.0)
    assert image[5, 5] == 0 and image[0, 10] == 0 and (image == 0).sum() == 2


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def write_scores(path):
    writer = ScoreWriter(path)
    writer.write(np.array([0.5, 2.0]), np.array([0.3, 1.0]), np.array([False, True]))
    writer.write(np.array([1.0]), np.array([0.6]), np.array([False]))
    return writer.close()


def test_score_writer_formats(tmp_path):
    csv = write_scores(tmp_path / "s.csv").read_text().splitlines()
    assert csv == ["index,score,normal_quantile,flag", "0,0.5,0.3,0", "1,2,1,1", "2,1,0.6,0"]
    table = np.load(write_scores(tmp_path / "s.npy"))
    assert table.dtype == SCORE_DTYPE and table.shape == (3,)
    np.testing.assert_array_equal(table["index"], [0, 1, 2])
    np.testing.assert_array_equal(table["flag"], [False, True, False])
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = pq.read_table(write_scores(tmp_path / "s.parquet")).to_pydict()
    assert parquet["score"] == [0.5, 2.0, 1.0] and parquet["index"] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.npy", "s.parquet"]


def test_score_writer_abort_and_bad_target(tmp_path):
    writer = ScoreWriter(tmp_path / "s.npy")
    writer.write(np.array([0.5]), np.array([0.3]), np.array([False]))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="unsupported output format .txt"):
        ScoreWriter(tmp_path / "s.txt")
    with pytest.raises(InputError, match="output folder .* does not exist"):
        ScoreWriter(tmp_path / "missing" / "s.csv")
