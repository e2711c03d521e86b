"""`gen sample` streams NPY/CSV block by block: the same samples as `model.sample` for a seed,
memory that does not grow with --n, PNGs capped, and a disk too small refused up front."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest

from gen.runtime import InputError, load
from gen.runtime import model as model_module
from gen.runtime.outputs import MAX_PNG_SAMPLES, sample_block_rows


def test_block_rows_follow_the_row_size():
    assert sample_block_rows(64) == 65536
    assert sample_block_rows(784) == (16 << 20) // (4 * 784)
    assert sample_block_rows(10**9) == 64


@pytest.mark.parametrize("family", ["ae", "rbm", "adagan"])
def test_blocks_are_seeded_and_the_file_matches_the_api(bundles, family, monkeypatch, tmp_path):
    """With small blocks (100 rows): several blocks, the same seed gives the same rows, the
    file holds exactly model.sample's rows, and the first block is a plain draw of its rows."""
    monkeypatch.setattr(model_module, "sample_block_rows", lambda width: 100)
    model = load(bundles[family], device="cpu")
    options = {"steps": 3} if family == "rbm" else {}
    first = model.sample(250, seed=7, **options)
    assert first.shape == (250, *model.shape)
    np.testing.assert_array_equal(first, model.sample(250, seed=7, **options))
    assert not np.array_equal(first, model.sample(250, seed=8, **options))
    assert [len(b) for b in model.sample_blocks(250, seed=7, **options)] == [100, 100, 50]
    np.testing.assert_array_equal(first[:100], model.sample(100, seed=7, **options))
    path = model.sample_file(250, tmp_path / "s.npy", seed=7, **options)
    np.testing.assert_array_equal(np.load(path), first)
    model.sample_file(250, tmp_path / "s.csv", seed=7, **options)
    rows = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1, dtype=np.float32)
    np.testing.assert_array_equal(rows, first.reshape(250, -1))


def test_png_is_capped_and_seed_checked(bundles, tmp_path):
    model = load(bundles["ae"], device="cpu")
    with pytest.raises(InputError, match=f"a PNG holds at most {MAX_PNG_SAMPLES:,} samples"):
        model.sample_file(MAX_PNG_SAMPLES + 1, tmp_path / "g.png")
    with pytest.raises(InputError, match="seed must be an integer"):
        model.sample(4, seed=-1)
    assert not list(tmp_path.iterdir())


def test_a_disk_too_small_is_refused_before_sampling(bundles, monkeypatch, tmp_path):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    model = load(bundles["ae"], device="cpu")
    with pytest.raises(InputError, match=r"need at least .* GiB; .* GiB free"):
        model.sample_file(10_000, tmp_path / "s.npy")
    assert not list(tmp_path.iterdir())


def peak_rss_mib(bundle, n, out) -> float:
    """Peak RSS of a `gen sample` subprocess (its own process, measured by a parent that runs
    nothing else)."""
    script = ("import resource, subprocess, sys\n"
              "cmd = [sys.executable, '-c', 'import sys; sys.argv[0] = \"gen\"; from gen.cli.entry import main; main()',"
              " 'sample', sys.argv[1], '--n', sys.argv[2], '--out', sys.argv[3], '--device', 'cpu']\n"
              "assert subprocess.run(cmd, capture_output=True).returncode == 0\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    result = subprocess.run([sys.executable, "-c", script, str(bundle), str(n), str(out)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip()) / 1024


def test_memory_does_not_grow_with_n(bundles, tmp_path):
    """10x the rows (about 2 and 20 blocks of 65,536 digits rows): the output grows by ~280 MiB,
    the peak RSS by a fifth of that at most (measured: 4 to 32 MiB, the allocator's slack
    around the 16 MiB blocks; a draw held in memory would add the whole 280 MiB)."""
    small = peak_rss_mib(bundles["ae"], 131_072, tmp_path / "small.npy")
    large = peak_rss_mib(bundles["ae"], 1_310_720, tmp_path / "large.npy")
    grown = ((tmp_path / "large.npy").stat().st_size - (tmp_path / "small.npy").stat().st_size) / 2**20
    assert grown > 250
    assert large - small < grown / 5, (small, large, grown)
