"""Schemathesis hooks for aiops: remote_write bodies are sent as the bytes generated."""
import schemathesis


@schemathesis.serializer("application/x-protobuf")
def protobuf(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode()
