"""`gen serve` started on 127.0.0.1 in a subprocess, called with tritonclient.http (NVIDIA's
Open Inference Protocol client): health, metadata, score and sample equal to gen.runtime on
the same rows, bad requests answered 400 with the server still healthy, the bearer token, and
SIGTERM draining an in-flight request."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

httpclient = pytest.importorskip("tritonclient.http")
if importlib.util.find_spec("kserve") is None:  # never imported here: its protobufs clash with tritonclient.grpc's
    pytest.skip("gen[serve] not installed", allow_module_level=True)

from gen.runtime import load  # noqa: E402

SCRIPT = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"


class Server:
    def __init__(self, tmp: Path, *bundles_and_options: str):
        self.ready = tmp / f"ready-{time.monotonic_ns()}"
        self.log = open(tmp / "serve.log", "a+")
        self.proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "serve", *bundles_and_options, "--port", "0",
                                      "--ready-file", str(self.ready), "--device", "cpu"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 90
        while not self.ready.is_file() or not self.ready.read_text():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.log.seek(0)
                raise AssertionError(f"gen serve did not start: {self.log.read()[-2000:]}")
            time.sleep(0.05)
        ports = json.loads(self.ready.read_text())
        self.port, self.grpc_port = ports["http"], ports["grpc"]
        self.url = f"127.0.0.1:{self.port}"

    def client(self, **kwargs):
        return httpclient.InferenceServerClient(self.url, **kwargs)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"), str(bundles["vae"]), "--name", "digits", "--grpc-port", "0")
    yield s
    s.stop()


def x_input(rows: np.ndarray, binary: bool = True):
    tensor = httpclient.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=binary)
    return tensor


def test_health_and_metadata(server):
    client = server.client()
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits.sample")
    meta = client.get_model_metadata("digits.score")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert [o["name"] for o in meta["outputs"]][:3] == ["score", "normal_quantile", "flag"]
    assert client.get_model_metadata("digits.encode")["outputs"][0]["name"] == "z"
    assert not client.is_model_ready("nothing")


@pytest.mark.parametrize("binary", [True, False])
def test_score_encode_reconstruct_equal_the_runtime(server, bundles, digits_rows, binary):
    model = load(bundles["vae"], device="cpu")
    client = server.client()
    rows = digits_rows[:37]
    result = client.infer("digits.score", [x_input(rows, binary)])
    np.testing.assert_allclose(result.as_numpy("score"), model.score(rows), rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("normal_quantile"), model.normal_quantile(model.score(rows)),
                               rtol=1e-6)
    assert np.array_equal(result.as_numpy("flag"), model.flag(rows))
    assert np.allclose(client.infer("digits", [x_input(rows)]).as_numpy("score"), result.as_numpy("score"))
    np.testing.assert_allclose(client.infer("digits.encode", [x_input(rows)]).as_numpy("z"), model.encode(rows),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(client.infer("digits.reconstruct", [x_input(rows.reshape(-1, 1, 8, 8))])
                               .as_numpy("x_hat"), model.reconstruct(rows), rtol=1e-5, atol=1e-5)
    pixels = httpclient.InferInput("x", list(rows.shape), "UINT8")  # pixels as bytes: the same answers
    pixels.set_data_from_numpy(rows.astype(np.uint8), binary_data=binary)
    assert np.array_equal(client.infer("digits.score", [pixels]).as_numpy("score"), result.as_numpy("score"))


def test_sample_is_seeded_like_the_runtime(server, bundles):
    model = load(bundles["vae"], device="cpu")
    client = server.client()
    got = client.infer("digits.sample", [], parameters={"n": 5, "seed": 3}).as_numpy("samples")
    assert got.shape == (5, 1, 8, 8)
    np.testing.assert_allclose(got, model.sample(5, seed=3), rtol=1e-5, atol=1e-5)
    n = httpclient.InferInput("n", [1], "INT64")
    n.set_data_from_numpy(np.array([2], dtype=np.int64))
    assert client.infer("digits.sample", [n]).as_numpy("samples").shape == (2, 1, 8, 8)


def test_concurrent_requests_are_batched_and_equal_unbatched(server, bundles, digits_rows):
    model = load(bundles["vae"], device="cpu")
    results, errors = {}, []

    def call(i):
        try:
            rows = digits_rows[i * 10:i * 10 + 1 + i % 7]
            results[i] = (rows, server.client().infer("digits.score", [x_input(rows)]).as_numpy("score"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 16
    for rows, scores in results.values():
        np.testing.assert_allclose(scores, model.score(rows), rtol=1e-6)


def post(server, path: str, body: bytes, token: str | None = None):
    request = urllib.request.Request(f"http://{server.url}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_requests_are_400_with_one_line_and_the_server_keeps_serving(server, digits_rows):
    infer = "/v2/models/digits.score/infer"
    nan = [1.0] * 64
    nan[5] = float("nan")  # json.dumps writes the literal NaN (a string "NaN" is not a number: test_hostile)
    cases = [
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
         "expected rows of shape (N, 64) or (N, 1, 8, 8)"),
        ({"inputs": [{"name": "y", "datatype": "FP32", "shape": [1, 64], "data": [1.0] * 64}]}, "'y': not an input"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 64], "data": [1.0] * 64}]}, "input 'x'"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": nan}]}, "value is nan"),
    ]
    for body, message in cases:
        status, answer = post(server, infer, json.dumps(body).encode())
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"], (body, answer)
    for path in ("/v2/repository/models/digits.score/unload", "/v1/models/digits:predict", "/docs"):
        status, answer = post(server, path, b"{}")
        assert status == 404 and "not served" in answer["error"], path
    assert server.client().is_model_ready("digits.score")
    status, answer = post(server, infer, b"not json")
    assert status == 400 and answer["error"].startswith("request body")
    status, answer = post(server, "/v2/models/digits.sample/infer", json.dumps({"inputs": [], "parameters": {"n": 0}})
                          .encode())
    assert status == 400 and "'n': expected 1.." in answer["error"]
    assert server.client().is_server_live()
    result = server.client().infer("digits.score", [x_input(digits_rows[:2])])
    assert result.as_numpy("score").shape == (2,)


def test_token_and_body_limit(bundles, tmp_path, digits_rows):
    s = Server(tmp_path, str(bundles["ae"]), "--token", "sekrit", "--max-body-mb", "0.01", "--grpc-port", "0")
    try:
        open_client = s.client()
        assert open_client.is_server_live()  # liveness needs no token
        assert not open_client.is_server_ready()  # 401 without the token
        client = s.client()
        headers = {"Authorization": "Bearer sekrit"}
        assert client.is_server_ready(headers=headers)
        assert client.infer("ae.score", [x_input(digits_rows[:2])], headers=headers).as_numpy("score").shape == (2,)
        status, answer = post(s, "/v2/models/ae.score/infer", b"{}", token="wrong")
        assert status == 401
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [100, 64],
                                       "data": [1.0] * 6400}]}).encode()
        status, answer = post(s, "/v2/models/ae.score/infer", body, token="sekrit")
        assert status == 413 and "over the limit" in answer["error"]
        import http.client  # the same body sent chunked, with no Content-Length: counted, 413 too

        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        conn.request("POST", "/v2/models/ae.score/infer", body=iter([body[i:i + 4096] for i in range(0, len(body), 4096)]),
                     headers={"Authorization": "Bearer sekrit", "Content-Type": "application/json"},
                     encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and "over the limit" in json.loads(response.read())["error"]
        conn.close()
        grpcclient = pytest.importorskip("tritonclient.grpc")
        rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        assert rpc.is_server_live()
        with pytest.raises(Exception, match="UNAUTHENTICATED|bearer token"):
            rpc.is_server_ready()
        assert rpc.is_server_ready(headers={"authorization": "Bearer sekrit"})
    finally:
        s.stop()


def test_sigterm_lets_the_request_in_flight_finish(bundles, tmp_path, digits_rows):
    """A request waiting in a long batching window when SIGTERM arrives is still answered;
    then the process exits 0 and the port is closed."""
    s = Server(tmp_path, str(bundles["ae"]), "--max-delay-ms", "4000")
    answer = {}

    def call():
        answer["scores"] = s.client(network_timeout=60).infer("ae.score", [x_input(digits_rows[:3])]).as_numpy("score")

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(1.5)  # the request is in the server's batching window by now, even on a busy machine
    s.proc.send_signal(signal.SIGTERM)
    thread.join(timeout=60)
    assert answer["scores"].shape == (3,)
    assert s.proc.wait(timeout=60) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{s.url}/v2/health/live", timeout=5)
    s.log.close()


def test_grpc_with_tritonclient(server, bundles, digits_rows):
    """The protocol's gRPC service (KServe's servicer), called with tritonclient.grpc."""
    grpcclient = pytest.importorskip("tritonclient.grpc")
    model = load(bundles["vae"], device="cpu")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert client.is_server_live() and client.is_model_ready("digits.score")
    x = grpcclient.InferInput("x", [5, 64], "FP32")
    x.set_data_from_numpy(digits_rows[:5].astype(np.float32))
    result = client.infer("digits.score", [x])
    np.testing.assert_allclose(result.as_numpy("score"), model.score(digits_rows[:5]), rtol=1e-6)
    bad = grpcclient.InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.ones((1, 3), np.float32))
    with pytest.raises(Exception, match="expected rows of shape"):
        client.infer("digits.score", [bad])
    assert client.is_server_live()


def test_a_request_past_its_timeout_gets_503_and_blocks_no_one(bundles, tmp_path, digits_rows):
    """With a batching window longer than the timeout, a small request times out (503); a
    request big enough to run alone is answered meanwhile, and the server stays healthy."""
    s = Server(tmp_path, str(bundles["ae"]), "--max-delay-ms", "3000", "--max-batch", "8", "--timeout-s", "0.5")
    try:
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64],
                                       "data": digits_rows[0].tolist()}]}).encode()
        status, answer = {}, {}

        def slow():
            status["slow"], answer["slow"] = post(s, "/v2/models/ae.score/infer", body)

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.1)
        start = time.monotonic()
        big = s.client().infer("ae.score", [x_input(digits_rows[:8])])  # >= --max-batch: runs at once
        assert big.as_numpy("score").shape == (8,) and time.monotonic() - start < 2.5
        thread.join(timeout=30)
        assert status["slow"] == 503 and "no answer within 0.5 s" in answer["slow"]["error"]
        assert s.client().is_server_live()
    finally:
        s.stop()


def test_a_busy_port_is_one_line_and_exit_2(bundles, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        for option in ("--port", "--grpc-port"):
            args = [option, str(port)] + (["--port", "0"] if option == "--grpc-port" else [])
            out = subprocess.run([sys.executable, "-c", SCRIPT, "serve", str(bundles["ae"]), *args],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 2, out.stderr
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: 127.0.0.1:{port}: cannot listen"), out.stderr
