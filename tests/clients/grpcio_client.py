"""Calls the eventbus plugin over its unix socket with grpcio, Python's standard gRPC client.

Usage: grpcio_client.py SOCKET_PATH AUTHORITY...

For each AUTHORITY, a channel of its own (so a connection of its own) to `unix:SOCKET_PATH`:
  default   grpcio's defaults: newer grpcio sends the socket path, percent-encoded, as
            `:authority`
  raw-path  the raw socket path as `:authority`, as older grpcio sends it
  unused    `unused`, as go-plugin's Go client sends it
and on it grpc.health.v1.Health/Check for the service "plugin", then
workflow.plugin.v1.PluginService/GetContractRegistry.

Prints one JSON object per call on stdout. The messages are encoded and decoded by hand (a
few protobuf fields) so that grpcio is the only package needed. Exit codes: 0 every call
answered, 1 a call failed, 3 grpcio is not installed.
"""

import json
import sys

try:
    import grpc
except ImportError:
    print(
        f"grpcio is not installed for {sys.executable}: run ./dev setup",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT = 30


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf, i):
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def fields(buf):
    """(field number, value) for each field: varints as int, length-delimited as bytes."""
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 2:
            size, i = read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"unexpected wire type {wire} for field {number}")
        yield number, value


def health_check(channel, service):
    """HealthCheckRequest{service = 1}; the answer's status (field 1; SERVING is 1)."""
    call = channel.unary_unary("/grpc.health.v1.Health/Check")
    name = service.encode()
    reply = call(b"\x0a" + varint(len(name)) + name, timeout=TIMEOUT)
    return dict(fields(reply)).get(1, 0)


def contract_services(channel):
    """GetContractRegistry(Empty): the service_name (field 5) of each contract (field 1)."""
    call = channel.unary_unary("/workflow.plugin.v1.PluginService/GetContractRegistry")
    reply = call(b"", timeout=TIMEOUT)
    return [
        dict(fields(contract)).get(5, b"").decode()
        for number, contract in fields(reply)
        if number == 1
    ]


def channel_options(authority, path):
    return {
        "default": [],
        "raw-path": [("grpc.default_authority", path)],
        "unused": [("grpc.default_authority", "unused")],
    }[authority]


def calls(authority, path):
    target = "unix:" + path
    with grpc.insecure_channel(target, options=channel_options(authority, path)) as channel:
        status = health_check(channel, "plugin")
        print(json.dumps({"authority": authority, "call": "health", "status": status}))
        services = contract_services(channel)
        print(json.dumps({"authority": authority, "call": "registry", "services": services}))


def main():
    path, authorities = sys.argv[1], sys.argv[2:]
    print(f"grpcio {grpc.__version__}", file=sys.stderr)
    try:
        for authority in authorities:
            calls(authority, path)
    except grpc.RpcError as e:
        print(f"call failed: {e.code()}: {e.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
