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
