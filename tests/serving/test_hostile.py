"""`gen serve` against a hostile client (issue 23): an empty token, bad names, binary bodies
whose sizes do not add up, JSON values that are not numbers, inputs given twice, gRPC
parameters and answers, a flood of refused requests in the log, stalled and concurrent big
bodies, and requests arriving as SIGTERM does. Servers run in subprocesses (test_server's
Server), called with raw sockets, http.client and tritonclient; kserve is never imported here."""

from __future__ import annotations

import http.client
import json
import random
import re
import signal
import socket
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.serving import server as serving
from gen.serving.verbs import check_binary_body, tensor_array
from gen.runtime import ConfigError, InputError

from .test_server import Server

pytest.importorskip("tritonclient.grpc")


def body_of(rows: np.ndarray, name: str = "x") -> bytes:
    return json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": list(rows.shape),
                                   "data": rows.ravel().tolist()}]}).encode()


def call(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict | None = None):
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def log_of(s: Server) -> str:
    s.log.flush()
    with open(s.log.name) as f:
        return f.read()


@pytest.fixture(scope="module")
def shared(bundles, tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("hostile"), str(bundles["vae"]), "--name", "digits", "--grpc-port", "0",
               "--read-timeout-s", "2")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bounded(bundles, tmp_path_factory):
    """Bodies of at most 6 MiB, so 12 MiB in flight by default (and 2 gRPC inference calls at
    once); 2 s to be let in or answered; a body may pause 30 s (longer than any test here takes)."""
    s = Server(tmp_path_factory.mktemp("bounded"), str(bundles["vae"]), "--name", "digits", "--max-body-mb", "6",
               "--timeout-s", "2", "--grpc-port", "0", "--read-timeout-s", "30")
    yield s
    s.stop()


def head_of(length: int, model: str = "digits.score") -> bytes:
    """A REST inference request's headers, for a JSON body of `length` bytes."""
    return (b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: gen\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (model.encode(), length))


def until(attempt, tries: int = 30):
    """attempt() until it returns something true (at most `tries` times); that value, or None."""
    for _ in range(tries):
        got = attempt()
        if got:
            return got
    return None


def stalled_grpc_call(port: int, release: threading.Event):
    """A gRPC ModelInfer call whose message never comes (until `release`): its future."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.stream_unary("/inference.GRPCInferenceService/ModelInfer",
                                request_serializer=pb.ModelInferRequest.SerializeToString,
                                response_deserializer=pb.ModelInferResponse.FromString)

    def nothing():
        release.wait(120)
        return
        yield

    return call.future(nothing())


# -- 1, 9: refused at start, one line, exit 2 (in-process: serve() is never reached) ----------

@pytest.fixture
def never_served(monkeypatch):
    served = []
    monkeypatch.setattr(serving, "import_kserve", lambda: None)
    monkeypatch.setattr(serving, "serve", lambda *a, **k: served.append(k))
    return served


@pytest.mark.parametrize("args, env", [([], {"GEN_SERVE_TOKEN": ""}), ([], {"GEN_SERVE_TOKEN": "  "}),
                                       (["--token", ""], {}), (["--token", " \t"], {}),
                                       (["--token", "two words"], {}), (["--token", "sekrit\n"], {})])
def test_an_empty_or_unusable_token_is_refused_at_start(bundles, never_served, args, env):
    result = CliRunner().invoke(app, ["serve", str(bundles["ae"]), *args], env=env)
    assert result.exit_code == 2 and not never_served, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --token (or $GEN_SERVE_TOKEN)"), result.output


def test_a_token_from_the_environment_is_used(bundles, never_served):
    result = CliRunner().invoke(app, ["serve", str(bundles["ae"])], env={"GEN_SERVE_TOKEN": "sekrit"})
    assert result.exit_code == 0 and never_served[0]["token"] == "sekrit", result.output


@pytest.mark.parametrize("name", ["a b", "a.b", "a/b", "", ".hidden", "é"])
def test_model_names_are_plain_words(bundles, never_served, name):
    result = CliRunner().invoke(app, ["serve", str(bundles["ae"]), "--name", name])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and not never_served, result.output
    assert len(lines) == 1 and "a model name is a plain word" in lines[0], result.output


def test_a_bundle_folder_that_is_no_plain_word_needs_a_name(bundle_copy, never_served):
    folder = bundle_copy("ae")
    spaced = folder.rename(folder.with_name("my bundle"))
    result = CliRunner().invoke(app, ["serve", str(spaced)])
    assert result.exit_code == 2 and "bundle folder 'my bundle'" in result.output and "--name" in result.output
    assert CliRunner().invoke(app, ["serve", str(spaced), "--name", "mine"]).exit_code == 0


def test_inflight_bytes_below_the_body_limit_are_refused(bundles, never_served):
    result = CliRunner().invoke(app, ["serve", str(bundles["ae"]), "--max-body-mb", "8", "--max-inflight-mb", "4"])
    assert result.exit_code == 2 and "--max-inflight-mb 4 is below --max-body-mb 8" in result.output


# -- 2: the binary extension's sizes are checked, the connection kept ----------------------

def test_binary_sizes_that_do_not_add_up_are_400_and_the_connection_lives(shared, digits_rows):
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=30)
    x = digits_rows[:1].astype(np.float32).tobytes()

    def binary(shape, size, data, json_length=None):
        head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": shape,
                                       "parameters": {"binary_data_size": size}}]}).encode()
        conn.request("POST", "/v2/models/digits.score/infer", body=head + data,
                     headers={"Inference-Header-Content-Length": str(json_length or len(head))})
        response = conn.getresponse()
        return response.status, json.loads(response.read()) if response.status != 200 else response.read()

    cases = [(([2, 64], 512, x), "add up to 512 bytes, but 256 follow"),    # more declared than sent
             (([1, 64], 256, x + x), "add up to 256 bytes, but 512 follow"),  # more sent than declared
             (([1, 64], 1000, x), "binary_data_size 1000 for shape [1, 64] of FP32, which needs 256"),
             (([1, 64], "256", x), "binary_data_size must be a non-negative integer"),
             (([1, 64], 256, x, 10**6), "Inference-Header-Content-Length 1000000")]
    for args, message in cases:
        status, answer = binary(*args)
        assert status == 400 and message in answer["error"], (args[:2], answer)
        assert binary([1, 64], 256, x)[0] == 200  # the same keep-alive connection still answers
    conn.close()
    assert "Traceback" not in log_of(shared)


# -- 8: JSON values must be numbers; an input given twice ------------------------------------

def test_json_values_must_be_numbers_and_inputs_appear_once(shared, digits_rows):
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=30)
    row = digits_rows[0].tolist()
    for value, message in (("1", "FP32 data must be numbers, got '1'"), (True, "got True"), ("NaN", "got 'NaN'"),
                           (None, "got None"), ([1.0], "nested data rows of different lengths")):
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64],
                                       "data": [value, *row[1:]]}]}).encode()
        status, answer = call(conn, "/v2/models/digits.score/infer", body)
        assert status == 400 and message in answer["error"], (value, answer)
    twice = json.loads(body_of(digits_rows[:1]))
    twice["inputs"] *= 2
    status, answer = call(conn, "/v2/models/digits.score/infer", json.dumps(twice).encode())
    assert status == 400 and answer["error"] == "input 'x': given twice"
    n = {"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [2.5]}]}
    status, answer = call(conn, "/v2/models/digits.sample/infer", json.dumps(n).encode())
    assert status == 400 and "INT64 data must be integers, got 2.5" in answer["error"]
    assert call(conn, "/v2/models/digits.score/infer", body_of(digits_rows[:2]))[0] == 200


# -- 5 (and gRPC's side of 2, 3, 8): parameters, answers tritonclient decodes, refusals -------

def test_grpc_sample_parameters_and_answers(shared, bundles):
    import tritonclient.grpc as grpcclient
    from gen.runtime import load

    model = load(bundles["vae"], device="cpu")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{shared.grpc_port}")
    got = client.infer("digits.sample", [], parameters={"n": 4, "seed": 3}).as_numpy("samples")
    assert got.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(got, model.sample(4, seed=3), rtol=1e-5, atol=1e-5)
    plain = client.infer("digits.sample", []).as_numpy("samples")  # no parameters: n 1, seed 0
    np.testing.assert_allclose(plain, model.sample(1, seed=0), rtol=1e-5, atol=1e-5)
    for parameters, message in (({"n": True}, "got True"), ({"n": "3"}, "got '3'"), ({"n": 2.5}, "a double")):
        with pytest.raises(Exception, match=re.escape(message)) as caught:
            client.infer("digits.sample", [], parameters=parameters)
        assert "INVALID_ARGUMENT" in str(caught.value)


def test_grpc_refusals_are_statuses_and_one_log_line(shared, digits_rows):
    import grpc
    from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{shared.grpc_port}"))
    x = digits_rows[:1].astype(np.float32).tobytes()

    def typed_x():
        return pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 64])

    def infer(model="digits.score", raw=(x,), inputs=None):
        inputs = [typed_x()] * len(raw) if inputs is None else inputs
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb.ModelInferRequest(model_name=model, inputs=inputs, raw_input_contents=list(raw)))
        return caught.value.code(), caught.value.details()

    time.sleep(serving.LOG_WINDOW_S * 1.1)  # a new window of the log's rate limit: the next line is logged
    code, details = infer(model="nothing-here")
    assert code == grpc.StatusCode.NOT_FOUND and "nothing-here" in details
    assert infer(raw=(x[:-4],)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                    "input 'x': 252 bytes of FP32 data for shape [1, 64], which needs 256")
    assert infer(raw=(x + b"\0" * 4,))[1] == "input 'x': 260 bytes of FP32 data for shape [1, 64], which needs 256"
    assert infer(raw=(x, x)) == (grpc.StatusCode.INVALID_ARGUMENT, "input 'x': given twice")
    for inputs, raw in (([typed_x()], (x, x)), ([], (x,)), ([typed_x()] * 2, (x,))):  # raw contents not one per input
        code, details = infer(raw=raw, inputs=inputs)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert f"number of inputs ({len(inputs)}) does not match the expected number of raw input contents " \
               f"({len(raw)})" in details
    typed = typed_x()
    typed.contents.int64_contents.extend([1] * 64)  # values in the wrong field for FP32
    assert infer(raw=(), inputs=[typed])[1] == "input 'x': 0 values for shape [1, 64], which needs 64"
    log = log_of(shared)
    assert "Traceback" not in log and re.search(r"404 grpc ModelInfer: .*nothing-here", log)
    assert not re.search(r"ERROR 500 grpc ModelInfer", log)


# -- 3, 10: one line per refused request, rate-limited; no traceback, no FastAPI warning -----

def test_refused_requests_leave_one_rate_limited_line_each(shared, digits_rows):
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=30)
    assert call(conn, "/v2/models/digits.score/infer", body_of(digits_rows[:1]))[0] == 200
    start = time.monotonic()
    for _ in range(200):
        status, answer = call(conn, "/v2/models/flood-model/infer", b'{"inputs": []}')
        assert status == 404 and "flood-model" in answer["error"]
    elapsed = time.monotonic() - start
    time.sleep(serving.LOG_WINDOW_S * 1.5)
    assert call(conn, "/v2/models/flood-model/infer", b'{"inputs": []}')[0] == 404  # reports the suppressed
    log = log_of(shared)
    lines = [line for line in log.splitlines() if "flood-model" in line]
    assert all(re.search(r"WARNING 404 POST /v2/models/flood-model/infer: Model with name flood-model does not "
                         r"exist\.", line) for line in lines), lines[:3]
    assert 1 <= len(lines) <= serving.LOG_LINES * (elapsed / serving.LOG_WINDOW_S + 3) and len(lines) < 200
    assert re.search(r"flood-model does not exist\. \(\d+ lines suppressed before this one\)", lines[-1])
    assert "Traceback" not in log and "ORJSONResponse" not in log and "warning:" not in log


# -- 7: stalled headers and bodies get 408 and are closed ----------------------------------

def test_stalled_requests_get_408_and_silent_connections_close(shared, digits_rows):
    body = body_of(digits_rows[:1])
    head = (b"POST /v2/models/digits.score/infer HTTP/1.1\r\nHost: gen\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    stalled_body, stalled_head, silent = (socket.create_connection(("127.0.0.1", shared.port), timeout=30)
                                          for _ in range(3))
    stalled_body.sendall(head + body[:40])
    stalled_head.sendall(head[:30])

    def answer(sock) -> bytes:  # everything until the server closes (the timeout proves it does)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        return data

    got = answer(stalled_body)
    assert got.startswith(b"HTTP/1.1 408 ")
    assert b"request body stalled: nothing received for 2 s (--read-timeout-s)" in got
    got = answer(stalled_head)
    assert got.startswith(b"HTTP/1.1 408 ") and b"request headers not received within 2 s" in got
    assert answer(silent) == b""
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=30)
    assert call(conn, "/v2/models/digits.score/infer", body)[0] == 200


def test_endless_headers_get_431(shared):
    sock = socket.create_connection(("127.0.0.1", shared.port), timeout=30)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: gen\r\nX-Padding: ")
    try:
        for _ in range(serving.MAX_HEADER_BYTES // 65536 + 2):
            sock.sendall(b"a" * 65536)
    except OSError:  # closed by the server: its answer is waiting
        pass
    reply = sock.recv(65536)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 431 ") and b"request headers over 1048576 bytes" in reply


def test_a_slow_body_that_keeps_coming_is_read(shared, digits_rows):
    """--read-timeout-s (2 s here) is the longest pause within a body, not a deadline for all
    of it: a body sent in parts 0.4 s apart over about 4 s is answered."""
    body = body_of(digits_rows[:4])
    sock = socket.create_connection(("127.0.0.1", shared.port), timeout=60)
    sock.sendall(head_of(len(body)))
    parts = 10
    for i in range(parts):
        time.sleep(0.4)
        sock.sendall(body[i * len(body) // parts:(i + 1) * len(body) // parts])
    reply = sock.recv(65536)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]


# -- 6: bytes in flight bounded across requests --------------------------------------------

def test_concurrent_big_bodies_keep_memory_bounded(bounded):
    """12 bodies of 5 MiB at once: today's code held them all (with their parsed JSON, about
    ten times their size) at once; now at most 12 MiB of bodies are let in together."""
    rows = np.random.default_rng(0).integers(0, 17, (int(5 * 2**20 / (64 * 5)), 64)).astype(np.float32)
    body = body_of(rows)
    assert 4 * 2**20 < len(body) <= 6 * 2**20

    def peak_mb() -> float:
        status = dict(line.split(":", 1) for line in open(f"/proc/{bounded.proc.pid}/status"))
        return int(status["VmHWM"].split()[0]) / 1024

    conn = http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=120)
    assert call(conn, "/v2/models/digits.score/infer", body)[0] == 200  # warm: one body's worth counts as baseline
    before = peak_mb()
    statuses = []

    def send():
        statuses.append(call(http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=120),
                             "/v2/models/digits.score/infer", body))

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(statuses) == 12 and {s for s, _ in statuses} <= {200, 503} and 200 in [s for s, _ in statuses]
    assert all(re.match(r"busy|digits.score: no answer within", a["error"]) for s, a in statuses if s == 503)
    assert peak_mb() - before < 250, (before, peak_mb())


def test_stalled_headers_claiming_big_bodies_hold_no_room(bounded, digits_rows):
    """Two connections claim bodies of 6 MiB (the limit; 12 MiB in flight in all) and send
    none of it: they hold nothing, so requests on REST and gRPC are answered (gen used to
    reserve what Content-Length claimed, and answered every other request 503 until the
    stalled ones timed out)."""
    import tritonclient.grpc as grpcclient

    hogs = [socket.create_connection(("127.0.0.1", bounded.port), timeout=60) for _ in range(2)]
    for hog in hogs:
        hog.sendall(head_of(6 * 2**20) + b'{"inputs": [')
    conn = http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=60)
    for _ in range(3):  # the hogs' headers are in by the second request, however busy the machine
        status, answer = call(conn, "/v2/models/digits.score/infer", body_of(digits_rows[:2]))
        assert status == 200, answer
    x = grpcclient.InferInput("x", [2, 64], "FP32")
    x.set_data_from_numpy(digits_rows[:2].astype(np.float32))
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{bounded.grpc_port}")
    assert client.infer("digits.score", [x]).as_numpy("score").shape == (2,)
    for hog in hogs:
        hog.close()


def fill(port: int, hogs: int, size: int) -> list:
    """`hogs` connections that each claim a body of `size` bytes, send all of it but its last
    byte, and wait: what they sent stays held in the bytes in flight."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(hogs)]
    for sock in socks:
        sock.sendall(head_of(size) + b" " * (size - 1))
    return socks


def test_a_request_finding_no_room_waits_then_gets_503(bounded, digits_rows):
    """Two connections send all but the last byte of 6 MiB bodies and stall: 12 MiB in flight
    are held. A small request waits --timeout-s (2 s) for room, then 503 with Retry-After
    (gRPC: UNAVAILABLE); once they go away, it is answered."""
    import tritonclient.grpc as grpcclient

    hogs = fill(bounded.port, 2, 6 * 2**20)

    def refused():  # 200 until the server has read what the hogs sent
        conn = http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=60)
        conn.request("POST", "/v2/models/digits.score/infer", body=body_of(digits_rows[:2]),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
        return response.status != 200 and (response.status, response.getheader("retry-after"), answer)

    status, retry, answer = until(refused)
    assert status == 503 and retry == "1", answer
    assert "busy: 12 MiB of request bodies in flight (--max-inflight-mb)" in answer["error"]
    x = grpcclient.InferInput("x", [2, 64], "FP32")
    x.set_data_from_numpy(digits_rows[:2].astype(np.float32))
    with pytest.raises(Exception, match="busy: 12 MiB") as caught:
        grpcclient.InferenceServerClient(f"127.0.0.1:{bounded.grpc_port}").infer("digits.score", [x])
    assert "UNAVAILABLE" in str(caught.value)
    for hog in hogs:
        hog.close()  # what they held is given back
    assert until(lambda: not refused(), tries=10)


def test_a_sample_waits_for_room_for_its_answer(bounded):
    """A sample's answer (n x 64 float32 values) is reserved before it is drawn: with 6 MiB of
    the 12 MiB held by a stalled body, 24576 samples (6 MiB) do not fit, and are refused 503;
    fewer are answered. (gen used to reserve the request's few bytes only.)"""
    hogs = fill(bounded.port, 1, 6 * 2**20)

    def sample(n: int):
        conn = http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=60)
        status, answer = call(conn, "/v2/models/digits.sample/infer",
                              json.dumps({"inputs": [], "parameters": {"n": n}}).encode())
        conn.close()
        return status, answer

    status, answer = until(lambda: (got := sample(24576))[0] != 200 and got, tries=5)
    assert status == 503 and "busy: 12 MiB" in answer["error"], answer
    status, answer = sample(16)
    assert status == 200 and answer["outputs"][0]["shape"] == [16, 1, 8, 8]
    hogs[0].close()
    assert until(lambda: sample(24576)[0] == 200, tries=10)


def test_grpc_inference_calls_are_let_in_by_count(bounded, digits_rows):
    """gRPC's core reads a whole message before gen sees it, so inference calls are let in by
    count: 12 MiB / 6 MiB = 2 at once. Two calls whose message never comes hold both places:
    a third waits 2 s, then UNAVAILABLE; REST is not held up; once they go, it is answered."""
    import tritonclient.grpc as grpcclient

    release = threading.Event()
    stalled = [stalled_grpc_call(bounded.grpc_port, release) for _ in range(2)]
    x = grpcclient.InferInput("x", [2, 64], "FP32")
    x.set_data_from_numpy(digits_rows[:2].astype(np.float32))
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{bounded.grpc_port}")

    def refused():
        try:
            client.infer("digits.score", [x])
        except Exception as exc:  # noqa: BLE001 - checked below
            return str(exc)
        return None

    error = until(refused)
    assert error is not None and "UNAVAILABLE" in error, error
    assert "busy: 2 gRPC inference calls in flight (--max-inflight-mb / --max-body-mb)" in error
    conn = http.client.HTTPConnection("127.0.0.1", bounded.port, timeout=60)
    assert call(conn, "/v2/models/digits.score/infer", body_of(digits_rows[:2]))[0] == 200
    for call_ in stalled:
        call_.cancel()
    release.set()
    assert until(lambda: not refused(), tries=10)


def test_a_grpc_message_that_never_comes_gets_deadline_exceeded(shared):
    """--read-timeout-s (2 s here) bounds the wait for a gRPC call's message: the call is
    answered DEADLINE_EXCEEDED and its place freed (the gRPC core would wait forever). A
    message that is no ModelInferRequest is INVALID_ARGUMENT, one line, no traceback."""
    import grpc

    release = threading.Event()
    future = stalled_grpc_call(shared.grpc_port, release)
    with pytest.raises(grpc.RpcError) as caught:
        future.result(timeout=60)
    release.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == "request message not received within 2 s (--read-timeout-s)"
    garbage = grpc.insecure_channel(f"127.0.0.1:{shared.grpc_port}").unary_unary(
        "/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as caught:
        garbage(b"\xff\xff\xff", timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "request: not one ModelInferRequest message"
    assert "Traceback" not in log_of(shared)


# -- 4: SIGTERM: stop accepting, answer every accepted request, exit 0 ----------------------

def test_sigterm_answers_every_accepted_connection_or_refuses_it(bundles, tmp_path, digits_rows):
    """Clients connect in a loop and send their request up to 0.5 s later; SIGTERM arrives once
    they have been answered 32 times. Each connection is answered 200 or refused at connect:
    none is accepted and then closed unanswered (uvicorn alone closes a connection with no
    request yet)."""
    s = Server(tmp_path, str(bundles["ae"]))
    body = body_of(digits_rows[:1])
    request = (b"POST /v2/models/ae.score/infer HTTP/1.1\r\nHost: gen\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    outcomes, lock = [], threading.Lock()

    def client(seed: int):
        rng = random.Random(seed)
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
            except ConnectionRefusedError:
                outcome = "refused"
            else:
                try:
                    time.sleep(rng.uniform(0, 0.5))
                    sock.sendall(request)
                    reply = sock.recv(65536)
                    outcome = reply.split(b" ", 2)[1].decode() if reply else "closed unanswered"
                except OSError as exc:
                    outcome = type(exc).__name__
                finally:
                    sock.close()
            with lock:
                outcomes.append(outcome)
            if outcome != "200":
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    end = time.monotonic() + 120
    while outcomes.count("200") < 32 and time.monotonic() < end:  # every client is under way
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=120)
    assert s.proc.wait(timeout=120) == 0
    s.log.close()
    assert set(outcomes) == {"200", "refused"}, sorted(set(outcomes))
    assert outcomes.count("refused") == 16


# -- the pieces alone ------------------------------------------------------------------------

def test_tensor_array_and_binary_checks():
    assert tensor_array("x", "FP32", [2, 2], [[1, 2.5], [3, 4]]).dtype == np.float32
    assert tensor_array("b", "BOOL", [2], [True, False]).tolist() == [True, False]
    rows = np.random.default_rng(0).random((3, 1, 2, 2)).astype(np.float32)
    got = tensor_array("x", "FP32", [3, 1, 2, 2], rows.tolist())  # nested rows, read by numpy in one pass
    assert got.dtype == np.float32 and np.array_equal(got, rows)
    assert tensor_array("x", "FP16", [3], [0, 1, 2.5]).tolist() == [0, 1, 2.5]
    assert tensor_array("n", "UINT64", [1], [2**64 - 1]).tolist() == [2**64 - 1]
    assert tensor_array("x", "FP32", [1], [10**20])[0] == np.float32(1e20)
    raw = np.arange(4, dtype=np.float32).tobytes()
    assert tensor_array("x", "FP32", [2, 2], raw=raw).tolist() == [[0, 1], [2, 3]]
    for args, message in ((("FP32", [1], ["1"]), "must be numbers, got '1'"),
                          (("FP64", [1], [False]), "must be numbers, got False"),
                          (("INT8", [1], [1.5]), "must be integers"), (("BOOL", [1], [1]), "true or false"),
                          (("INT8", [1], [300]), "does not fit INT8"), (("FP32", [-1], [1.0]), "non-negative"),
                          (("FP32", [2, 2], [[1, 2], [3]]), "different lengths"), (("BYTES", [1], [b"a"]), "numeric"),
                          (("FP32", [3], [1.0, 2.0]), "2 values for shape [3], which needs 3"),
                          # true / false among numbers: numpy alone would read them as 1 and 0
                          (("FP32", [2, 2], [[0.5, 1], [True, 0]]), "must be numbers, got True"),
                          (("FP32", [2], [False, 2.5]), "must be numbers, got False"),
                          (("INT64", [2], [True, 2]), "must be integers, got True"),
                          (("BOOL", [2], [True, 0]), "true or false, got 0"),
                          (("UINT8", [2], [1, -1]), "does not fit UINT8"), (("INT64", [1], [2**63]), "does not fit"),
                          (("FP32", [2], [1.0, None]), "got None"), (("FP32", [2], [[1.0], 2.0]), "different lengths"),
                          (("FP32", [1, 2], [["1", 2.0]]), "got '1'")):
        with pytest.raises(InputError, match=re.escape(message)):
            tensor_array("x", *args)
    with pytest.raises(InputError, match="12 bytes of FP32 data for shape \\[2, 2\\], which needs 16"):
        tensor_array("x", "FP32", [2, 2], raw=raw[:12])
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                                   "parameters": {"binary_data_size": 16}}]}).encode()
    check_binary_body(head + raw, str(len(head)))
    with pytest.raises(InputError, match="add up to 16 bytes, but 12 follow"):
        check_binary_body(head + raw[:12], str(len(head)))
    with pytest.raises(InputError, match="Inference-Header-Content-Length"):
        check_binary_body(head + raw, "-1")


def test_byte_budget_lets_in_first_come_first_served_and_times_out():
    import asyncio

    async def scenario():
        budget = serving.ByteBudget(10)
        assert await budget.acquire(6, 1)
        order = []

        async def wait(name, size, timeout=5.0):
            ok = await budget.acquire(size, timeout)
            order.append((name, ok))

        big, small = asyncio.ensure_future(wait("big", 8)), asyncio.ensure_future(wait("small", 2))
        await asyncio.sleep(0.05)
        assert order == [] and budget.used == 6  # small would fit, but waits behind big
        budget.release(6)
        await asyncio.gather(big, small)
        assert order == [("big", True), ("small", True)] and budget.used == 10
        assert not await budget.acquire(1, 0.05)  # no room within the timeout
        budget.release(8)
        budget.release(2)
        assert budget.used == 0 and not budget.waiting

    asyncio.run(scenario())


def test_half_received_bodies_waiting_on_each_other_are_not_left_to_time_out():
    """Two requests hold 4 of 10 bytes each and both wait for 4 more: neither would ever give
    any back. The younger is refused at once (not after its 60 s timeout), and the older goes on."""
    import asyncio

    async def scenario():
        budget = serving.ByteBudget(10)
        older, younger = serving.Held(budget), serving.Held(budget)
        assert await older.take(4, 60) and await younger.take(4, 60)
        first = asyncio.ensure_future(older.take(4, 60))
        await asyncio.sleep(0.01)
        assert not first.done()  # the younger may yet finish and give its bytes back
        assert await asyncio.wait_for(younger.take(4, 60), 30) is False
        younger.release()
        assert await asyncio.wait_for(first, 30) is True
        assert (older.bytes, younger.bytes, budget.used) == (8, 0, 8)
        older.release()
        assert budget.used == 0 and not budget.waiting
        held = serving.Held(budget)
        assert await held.take(6, 1) and await held.take(100, 1)  # never more than the budget, never waits on itself
        assert held.bytes == budget.used == 10
        held.release()

    asyncio.run(scenario())


def test_rate_limit_and_token_rules():
    import logging

    limit = serving.RateLimit(lines=2, window=60)
    records = [logging.LogRecord("gen.serve", logging.WARNING, __file__, 1, "line %d", (i,), None) for i in range(5)]
    assert [limit.filter(r) for r in records] == [True, True, False, False, False] and limit.dropped == 3
    limit.start -= 61  # the next window
    assert limit.filter(records[0]) and records[0].getMessage() == "line 0 (3 lines suppressed before this one)"
    for token in ("", " ", "a b", "é"):
        with pytest.raises(ConfigError, match="--token"):
            serving.check_token(token)
    serving.check_token("s3cr3t-TOKEN_=.~+/")
