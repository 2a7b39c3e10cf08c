#!/usr/bin/env python3
"""KEDA's external scaler in aiops, called by a gRPC client generated from the same proto
(grpcio-tools compiles api/proto/externalscaler.proto in this run): `aiops serve` with
`server.keda_listen`, credentials, and a scaling target fed by remote_write.

Checks: without a token or with a wrong one UNAUTHENTICATED, a write-only token
PERMISSION_DENIED, a reader's token passes (as on the HTTP API); with
the scaling token, GetMetricSpec names the target with its capacity per pod, GetMetrics answers
the value /api/v1/scaling/{name} serves, IsActive and StreamIsActive say active (and IsActive
says not with an activation value above it), an unknown target NOT_FOUND, no target
INVALID_ARGUMENT; with `server.keda_allow_unauthenticated` a call without a token passes.

    keda_test.py --aiops BIN
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import shutil
import tempfile
import time
import urllib.request

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALING, READER, WRITER = "scaling-token-0123456789", "reader-token-0123456789", "writer-token-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait(what, fn, deadline_s=60):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def stubs(out):
    """Compiles the proto into Python modules in `out` and imports them."""
    os.makedirs(out, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{ROOT}/api/proto", f"--python_out={out}", f"--grpc_python_out={out}",
                      f"{ROOT}/api/proto/externalscaler.proto"])
    assert rc == 0, "protoc failed"
    sys.path.insert(0, out)
    import externalscaler_pb2 as pb  # noqa: E402
    import externalscaler_pb2_grpc as rpc  # noqa: E402
    return pb, rpc


def start(aiops, work, http_port, grpc_port, extra=""):
    os.makedirs(work, exist_ok=True)
    for name, token in [("scaling", SCALING), ("reader", READER), ("writer", WRITER)]:
        with open(os.path.join(work, name), "w") as f:
            f.write(token)
    cfg = os.path.join(work, "aiops.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{http_port}"
keda_listen = "127.0.0.1:{grpc_port}"
{extra}
[[server.credentials]]
name = "keda"
scopes = ["scaling"]
token_file = "{work}/scaling"
[[server.credentials]]
name = "reader"
scopes = ["read"]
token_file = "{work}/reader"
[[server.credentials]]
name = "writer"
scopes = ["write"]
token_file = "{work}/writer"

[archive]
data_dir = "{work}/data"

[detect.scaling]
step_secs = 15
min_history_steps = 1000000

[[detect.scaling.targets]]
name = "checkout_rps"
selector = "checkout_rps"
capacity_per_pod = 10.0
lead_secs = 60
""")
    log = open(os.path.join(work, "serve.log"), "w")
    return subprocess.Popen([aiops, "serve", "--config", cfg], stdout=log, stderr=subprocess.STDOUT)


def get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def snappy_literal(data):
    """Snappy's raw format with literal elements only (valid, uncompressed)."""
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def send_load(base):
    """remote_write 1.0 by hand: checkout_rps every 15 s for the last 30 minutes."""
    import struct
    now = int(time.time() * 1000)
    labels = b"".join(field(1, 2, field(1, 2, k.encode()) + field(2, 2, v.encode()))
                      for k, v in [("__name__", "checkout_rps"), ("service", "checkout")])
    samples = b"".join(field(2, 2, field(1, 1, struct.pack("<d", 40.0 + i % 3)) + field(2, 0, varint(now - (120 - i) * 15000)))
                       for i in range(121))
    body = snappy_literal(field(1, 2, labels + samples))
    req = urllib.request.Request(base + "/api/v1/write", data=body, method="POST", headers={
        "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0", "Authorization": f"Bearer {WRITER}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status in (200, 204), r.status


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aiops", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aiops-keda-")
    try:
        check(args, tmp)
    except BaseException:
        print(f"the servers' configuration and data are kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def check(args, tmp):
    pb, rpc = stubs(os.path.join(tmp, "stubs"))
    http_port, grpc_port = free_port(), free_port()
    server = start(args.aiops, os.path.join(tmp, "a"), http_port, grpc_port)
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait("aiops ready", lambda: urllib.request.urlopen(base + "/readyz", timeout=2).status == 200)
        send_load(base)
        value = wait("a served value", lambda: get(f"{base}/api/v1/scaling/checkout_rps", SCALING))
        ch = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = rpc.ExternalScalerStub(ch)
        ref = pb.ScaledObjectRef(name="checkout", namespace="shop", scalerMetadata={"target": "checkout_rps"})
        auth = [("authorization", f"Bearer {SCALING}")]
        assert code_of(lambda: stub.IsActive(ref)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: stub.IsActive(ref, metadata=[("authorization", "Bearer wrong")])) \
            == grpc.StatusCode.UNAUTHENTICATED, "a wrong token"
        assert code_of(lambda: stub.IsActive(ref, metadata=[("authorization", f"Bearer {WRITER}")])) \
            == grpc.StatusCode.PERMISSION_DENIED, "a token without the scaling scope"
        # A reader may read scaling values, as on the HTTP API.
        assert stub.IsActive(ref, metadata=[("authorization", f"Bearer {READER}")]).result is True
        spec = stub.GetMetricSpec(ref, metadata=auth)
        assert [(s.metricName, s.targetSizeFloat, s.targetSize) for s in spec.metricSpecs] == [("checkout_rps", 10.0, 10)], spec
        m = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="checkout_rps"), metadata=auth)
        served = get(f"{base}/api/v1/scaling/checkout_rps", SCALING)["value"]
        got = m.metricValues[0]
        assert got.metricName == "checkout_rps" and abs(got.metricValueFloat - served) < 1e-9, (got, served, value)
        assert got.metricValue == int(-(-served // 1))
        assert stub.IsActive(ref, metadata=auth).result is True
        high = pb.ScaledObjectRef(name="checkout", namespace="shop",
                                  scalerMetadata={"target": "checkout_rps", "activationValue": "1000000"})
        assert stub.IsActive(high, metadata=auth).result is False
        first = next(iter(stub.StreamIsActive(ref, metadata=auth)))
        assert first.result is True
        unknown = pb.ScaledObjectRef(name="x", namespace="y", scalerMetadata={"target": "nope"})
        assert code_of(lambda: stub.GetMetricSpec(unknown, metadata=auth)) == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: stub.GetMetricSpec(pb.ScaledObjectRef(name="x"), metadata=auth)) \
            == grpc.StatusCode.INVALID_ARGUMENT
        print(f"KEDA external scaler: spec {spec.metricSpecs[0].metricName}/{spec.metricSpecs[0].targetSizeFloat}, "
              f"value {got.metricValueFloat:.3f} = served {served:.3f}, active, stream, errors: ok")
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Open to KEDA (no token) when allowed, for the gRPC port only.
    http_port, grpc_port = free_port(), free_port()
    server = start(args.aiops, os.path.join(tmp, "b"), http_port, grpc_port,
                   "keda_allow_unauthenticated = true\nkeda_max_streams = 2")
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait("aiops ready", lambda: urllib.request.urlopen(base + "/readyz", timeout=2).status == 200)
        send_load(base)
        wait("a served value", lambda: get(f"{base}/api/v1/scaling/checkout_rps", SCALING))
        stub = rpc.ExternalScalerStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        ref = pb.ScaledObjectRef(name="checkout", namespace="shop", scalerMetadata={"target": "checkout_rps"})
        assert wait("an answer without a token", lambda: stub.IsActive(ref).result is True)
        try:
            urllib.request.urlopen(f"{base}/api/v1/scaling/checkout_rps", timeout=5)
            raise AssertionError("the HTTP scaling route opened too")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        # Streams are bounded: two open, a third is refused naming the key; one closed, room again.
        open_streams = [stub.StreamIsActive(ref) for _ in range(2)]
        assert all(next(s).result is True for s in open_streams)
        try:
            next(stub.StreamIsActive(ref))
            raise AssertionError("a third stream opened")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.code()
            assert "server.keda_max_streams" in e.details(), e.details()
        open_streams[0].cancel()
        third = wait("room for a stream after one closed",
                     lambda: code_of(lambda: next(stub.StreamIsActive(ref))) == grpc.StatusCode.OK)
        assert third
        print("KEDA external scaler without a token (keda_allow_unauthenticated): ok; HTTP still needs one; "
              "streams capped at keda_max_streams")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
