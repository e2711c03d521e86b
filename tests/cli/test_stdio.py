"""`gen score B - --out -` and `gen encode B - --out -`: CSV or NPY on standard input, CSV on
standard output, byte for byte what file to file gives; the summary on stderr; bad input one
line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

SCRIPT = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"


def gen(*args, stdin: bytes = b""):
    return subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], input=stdin, capture_output=True)


@pytest.fixture(scope="module")
def rows(digits_rows, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stdio")
    x = digits_rows[:300]
    np.save(folder / "rows.npy", x)
    np.savetxt(folder / "rows.csv", x, delimiter=",", fmt="%.9g", header=",".join(f"p{i}" for i in range(64)),
               comments="")
    return folder


@pytest.mark.parametrize("verb, family", [("score", "ae"), ("encode", "vae")])
@pytest.mark.parametrize("source", ["rows.csv", "rows.npy"])
def test_stdin_to_stdout_equals_file_to_file(bundles, rows, tmp_path, verb, family, source):
    expected = tmp_path / "out.csv"
    assert gen(verb, bundles[family], rows / source, "--out", expected, "--device", "cpu").returncode == 0
    piped = gen(verb, bundles[family], "-", "--out", "-", "--chunk-rows", 64, "--device", "cpu",
                stdin=(rows / source).read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == expected.read_bytes()
    assert b"300" in piped.stderr  # the summary went to stderr, not into the data


def test_bad_stdin_is_one_line(bundles):
    result = gen("score", bundles["ae"], "-", "--out", "-", stdin=b"1,2\n3,4\n")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and lines[-1] == "error: <stdin>: line 1: expected 64 values, got 2"
    result = gen("score", bundles["ae"], "-", "--out", "-", stdin=b"")
    assert result.returncode == 2 and "no data rows" in result.stderr.decode()
    truncated = np.lib.format.magic(1, 0)
    result = gen("score", bundles["ae"], "-", "--out", "-", stdin=truncated + b"garbage")
    assert result.returncode == 2 and "malformed header" in result.stderr.decode()


def test_a_fortran_order_npy_on_stdin_is_refused_in_one_line_as_a_file_it_scores(bundles, rows, tmp_path):
    """Each row of a Fortran-order array is spread over the whole stream: refused on stdin with
    what to do instead; the same file scores like the C-order one."""
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(np.load(rows / "rows.npy")))
    result = gen("score", bundles["ae"], "-", "--out", "-", stdin=fortran.read_bytes())
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Fortran-order .npy cannot be read" in lines[0]
    assert "pass it as a file" in lines[0]
    for name, source in (("c.csv", rows / "rows.npy"), ("f.csv", fortran)):
        assert gen("score", bundles["ae"], source, "--out", tmp_path / name, "--device", "cpu").returncode == 0
    assert (tmp_path / "f.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
