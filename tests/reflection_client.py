#!/usr/bin/python3
"""A generic gRPC client driven by server reflection, pointed at tcpscope.v1.Observer.

It knows no tcpscope .proto file: it lists the server's services, fetches the file descriptors
that define tcpscope.v1.Observer from the server itself, builds the message classes from them,
and calls ListAgents, ListConnections and Summary (unary) and GetEvents (server streaming,
history only: `last`). What a third-party tool (grpcurl, Postman) would do, written with
Debian's python3-grpcio, python3-grpc-tools and python3-protobuf only, and the reflection
proto of Debian's grpc-proto (v1alpha: what grpc++ 1.51 serves).

Prints one JSON object per line: {"services": [...]}, then per call
{"call": "tcpscope.v1.Observer/ListAgents", "ok": true, "response": {...}} (GetEvents:
"responses": [...]), or "ok": false with "code" and "message". Exit status 0 when every step
and call succeeded; 1 otherwise, with a message on stderr naming what failed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import json_format
from google.protobuf import message_factory

REFLECTION_PROTO = "/usr/share/grpc-proto/grpc/reflection/v1alpha/reflection.proto"
REFLECTION_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
OBSERVER = "tcpscope.v1.Observer"
UNARY_CALLS = ("ListAgents", "ListConnections", "Summary")
STREAM_CALLS = ("GetEvents",)


class Failure(Exception):
    """A step that failed; its message says which and why."""


def message_class(descriptor):
    """The generated class of a message descriptor, on old and new protobuf alike."""
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


def reflection_messages(proto_path):
    """ServerReflectionRequest/Response classes, compiled from the .proto at run time.

    protoc writes a descriptor set rather than Python modules: the modules of Debian's
    grpc-tools 1.14 are in the legacy format and their package `grpc.reflection` would clash
    with the grpc module.
    """
    if not os.path.exists(proto_path):
        raise Failure(f"{proto_path} is missing (Debian package grpc-proto)")
    include = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(proto_path))))
    with tempfile.TemporaryDirectory(prefix="reflection_client.") as out:
        descriptor_set = os.path.join(out, "reflection.pb")
        compiled = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{include}",
             f"--descriptor_set_out={descriptor_set}", "--include_imports", proto_path],
            capture_output=True, text=True, check=False)
        if compiled.returncode != 0:
            raise Failure(f"grpc_tools.protoc {proto_path}: {compiled.stderr.strip()}")
        files = descriptor_pb2.FileDescriptorSet()
        with open(descriptor_set, "rb") as f:
            files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in files.file:
        pool.Add(file_proto)
    package = "grpc.reflection.v1alpha."
    return (message_class(pool.FindMessageTypeByName(package + "ServerReflectionRequest")),
            message_class(pool.FindMessageTypeByName(package + "ServerReflectionResponse")))


class Reflection:
    """One ServerReflectionInfo stream per question (the protocol allows many per stream)."""

    def __init__(self, channel, proto_path, timeout):
        self.request_class, response_class = reflection_messages(proto_path)
        self.timeout = timeout
        self.call = channel.stream_stream(
            REFLECTION_METHOD, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString)

    def ask(self, **question):
        try:
            responses = list(self.call(iter([self.request_class(**question)]),
                                       timeout=self.timeout))
        except grpc.RpcError as error:
            raise Failure(f"reflection {question}: {error.code().name}: {error.details()}")
        if len(responses) != 1:
            raise Failure(f"reflection {question}: {len(responses)} answers, expected 1")
        response = responses[0]
        if response.WhichOneof("message_response") == "error_response":
            raise Failure(f"reflection {question}: error {response.error_response.error_code}: "
                          f"{response.error_response.error_message}")
        return response

    def services(self):
        response = self.ask(list_services="")
        return sorted(service.name for service in response.list_services_response.service)

    def pool_with(self, symbol):
        """A descriptor pool holding the file that defines `symbol` and all its imports."""
        files = {}
        wanted = []

        def take(response):
            for data in response.file_descriptor_response.file_descriptor_proto:
                file_proto = descriptor_pb2.FileDescriptorProto.FromString(data)
                if file_proto.name not in files:
                    files[file_proto.name] = file_proto
                    wanted.extend(file_proto.dependency)

        take(self.ask(file_containing_symbol=symbol))
        while wanted:  # imports the server did not send along
            name = wanted.pop()
            if name not in files:
                take(self.ask(file_by_filename=name))
        pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name):  # imports first
            if name in added:
                return
            for dependency in files[name].dependency:
                add(dependency)
            pool.Add(files[name])
            added.add(name)

        for name in sorted(files):
            add(name)
        return pool


def to_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the gRPC server")
    parser.add_argument("--reflection_proto", default=REFLECTION_PROTO)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--last", type=int, default=5, help="GetEvents: history events asked")
    parser.add_argument("--calls", default=",".join(UNARY_CALLS + STREAM_CALLS),
                        help="comma list of Observer methods to call")
    args = parser.parse_args()

    failures = []
    with grpc.insecure_channel(args.target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
        except grpc.FutureTimeoutError:
            raise Failure(f"{args.target}: not connected within {args.timeout}s")
        reflection = Reflection(channel, args.reflection_proto, args.timeout)
        services = reflection.services()
        print(json.dumps({"services": services}), flush=True)
        if OBSERVER not in services:
            raise Failure(f"{OBSERVER} is not among the services: {services}")
        pool = reflection.pool_with(OBSERVER)
        service = pool.FindServiceByName(OBSERVER)
        for name in args.calls.split(","):
            method = service.methods_by_name.get(name)
            if method is None:
                raise Failure(f"{OBSERVER} has no method {name}")
            request_class = message_class(method.input_type)
            response_class = message_class(method.output_type)
            path = f"/{OBSERVER}/{name}"
            kwargs = dict(request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=response_class.FromString)
            request = request_class()
            result = {"call": f"{OBSERVER}/{name}"}
            try:
                if method.server_streaming:
                    # History only (no follow): the stream ends by itself.
                    json_format.ParseDict({"last": args.last}, request)
                    responses = channel.unary_stream(path, **kwargs)(request,
                                                                     timeout=args.timeout)
                    result.update(ok=True, responses=[to_dict(r) for r in responses])
                else:
                    response = channel.unary_unary(path, **kwargs)(request, timeout=args.timeout)
                    result.update(ok=True, response=to_dict(response))
            except grpc.RpcError as error:
                result.update(ok=False, code=error.code().name, message=error.details())
                failures.append(f"{name}: {error.code().name}: {error.details()}")
            print(json.dumps(result, sort_keys=True), flush=True)
    if failures:
        raise Failure("calls failed: " + "; ".join(failures))


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        print(f"reflection_client: {failure}", file=sys.stderr)
        sys.exit(1)
