"""Outputs are written atomically: complete files or nothing at all."""

import io

import numpy as np
import pytest

from gen.runtime.errors import InputError
from gen.runtime.outputs import (SCORE_DTYPE, ArrayWriter, ScoreWriter, anomaly_maps, atomic_path, heat_colors,
                                 image_grid, png_bytes, scatter_image)


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


def test_heat_colors_run_black_red_yellow_white():
    colors = heat_colors(np.array([0.0, 1 / 3, 2 / 3, 1.0, 2.0, -1.0]))
    assert colors.dtype == np.uint8 and colors.shape == (6, 3)
    assert colors.tolist() == [[0, 0, 0], [255, 0, 0], [255, 255, 0], [255, 255, 255], [255, 255, 255], [0, 0, 0]]


def test_anomaly_maps_layout():
    inputs = np.zeros((2, 1, 4, 4), dtype=np.float32)
    inputs[0, 0, 1, 2] = 16.0
    errors = np.zeros_like(inputs)
    errors[1, 0, 3, 3] = 5.0  # the largest error shown is white, the smallest black
    picture = anomaly_maps(inputs, errors, (0.0, 16.0), reconstructions=inputs)
    # zoom 64 // 4 = 16; two lines of three 4x4 tiles with 1-pixel grey padding
    assert picture.shape == ((2 * 5 + 1) * 16, (3 * 5 + 1) * 16, 3)
    tile = picture[::16, ::16]  # one pixel per source pixel
    assert tile[0, 0].tolist() == [128, 128, 128]  # padding
    assert tile[1 + 1, 1 + 2].tolist() == [255, 255, 255] and tile[1 + 1, 6 + 2].tolist() == [255, 255, 255]
    assert tile[6 + 3, 11 + 3].tolist() == [255, 255, 255] and tile[1, 11].tolist() == [0, 0, 0]
    assert anomaly_maps(inputs, errors, (0.0, 16.0)).shape == ((2 * 5 + 1) * 16, (2 * 5 + 1) * 16, 3)


def write_explained(path):
    writer = ScoreWriter(path, top_k=2, feature_width=9)
    writer.write(np.array([0.5, 2.0]), np.array([0.3, 1.0]), np.array([False, True]),
                 top_features=np.array([["c0_y1_x2", "a,b"], ["x1", 'say "hi"']]),
                 top_errors=np.array([[0.25, 0.125], [3.0, 1.0]]))
    return writer.close()


def test_score_writer_top_feature_columns(tmp_path):
    import csv

    with open(write_explained(tmp_path / "s.csv"), newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["index", "score", "normal_quantile", "flag",
                        "top1_feature", "top1_error", "top2_feature", "top2_error"]
    assert table[1] == ["0", "0.5", "0.3", "0", "c0_y1_x2", "0.25", "a,b", "0.125"]
    assert table[2][4:] == ["x1", "3", 'say "hi"', "1"]
    npy = np.load(write_explained(tmp_path / "s.npy"))
    assert npy.dtype["top1_feature"] == np.dtype("<U9") and npy["top2_feature"].tolist() == ["a,b", 'say "hi"']
    np.testing.assert_array_equal(npy["top1_error"], [0.25, 3.0])
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = pq.read_table(write_explained(tmp_path / "s.parquet")).to_pydict()
    assert parquet["top1_feature"] == ["c0_y1_x2", "x1"] and parquet["top2_error"] == [0.125, 1.0]


def test_array_writer_streams_npy_and_csv_atomically(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(1, 2)).astype(np.float32)]
    for name in ("c.npy", "c.csv"):
        writer = ArrayWriter(tmp_path / name, ["z0", "z1"])
        for part in parts:
            writer.write(part)
        assert not (tmp_path / name).exists()  # nothing at the target until close
        writer.close()
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), np.concatenate(parts))
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1, dtype=np.float32),
                                  np.concatenate(parts))
    writer = ArrayWriter(tmp_path / "d.npy", ["z0", "z1"])
    writer.write(parts[0])
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "c.npy"]
    with pytest.raises(InputError, match="unsupported output format .parquet; expected one of .npy, .csv"):
        ArrayWriter(tmp_path / "c.parquet", ["z0"])


def test_remove_live_temps_removes_this_process_temps_and_never_an_output(tmp_path):
    """What the console script calls on SIGINT / SIGTERM: a temp made just before the signal
    (its writer's cleanup never ran) is removed; a temp already renamed onto its target is
    not there any more, so the output stays."""
    from gen.runtime.outputs import atomic_path, make_temp, remove_live_temps

    left = make_temp(tmp_path / "a.csv")
    folder = make_temp(tmp_path / "bundle", folder=True)
    (folder / "x").write_text("x")
    with atomic_path(tmp_path / "done.csv") as tmp:
        tmp.write_text("kept")
    remove_live_temps()
    assert not left.exists() and not folder.exists()
    assert (tmp_path / "done.csv").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.csv"]
