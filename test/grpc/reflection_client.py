"""A foreign reflection client: Python grpcio with stubs generated at test time
from proto/grpc/reflection/v1/reflection.proto (generated with
-I proto/grpc/reflection/v1, so that no `grpc/` package shadows grpcio).

It lists the services, fetches the file that declares mcplockd.v1.LockService,
builds its message classes from those descriptors alone, calls ListLocks with
them, and prints a JSON summary for test/grpc/reflection.test.ts.

usage: reflection_client.py STUBS_DIR HOST:PORT
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import reflection_pb2  # noqa: E402
import reflection_pb2_grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory  # noqa: E402

ADDRESS = sys.argv[2]
TIMEOUT_S = 10


def main():
    out = {}
    with grpc.insecure_channel(ADDRESS) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        def ask(**request):
            # One request per stream: every answer carries all the imports.
            responses = list(
                stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=TIMEOUT_S)
            )
            assert len(responses) == 1, responses
            return responses[0]

        out["services"] = sorted(s.name for s in ask(list_services="").list_services_response.service)

        answer = ask(file_containing_symbol="mcplockd.v1.LockService")
        files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in answer.file_descriptor_response.file_descriptor_proto]
        out["files"] = [f.name for f in files]
        lock_file = files[0]
        service = next(s for s in lock_file.service if s.name == "LockService")
        out["package"] = lock_file.package
        out["methods"] = [
            {
                "name": m.name,
                "input_type": m.input_type,
                "output_type": m.output_type,
                "client_streaming": m.client_streaming,
                "server_streaming": m.server_streaming,
            }
            for m in service.method
        ]
        out["has_comments"] = any(loc.leading_comments.strip() for loc in lock_file.source_code_info.location)

        error = ask(file_containing_symbol="mcplockd.v1.NoSuchThing").error_response
        out["unknown_symbol"] = {"code": error.error_code, "message": error.error_message}

        # The descriptors are enough to call the service: no lock.proto here.
        pool = descriptor_pool.DescriptorPool()
        by_name = {f.name: f for f in files}
        added = set()

        def add(f):
            if f.name in added:
                return
            for dep in f.dependency:
                add(by_name[dep])
            pool.Add(f)
            added.add(f.name)

        for f in files:
            add(f)
        factory = message_factory.MessageFactory(pool)
        request_class = factory.GetPrototype(pool.FindMessageTypeByName("mcplockd.v1.ListLocksRequest"))
        response_class = factory.GetPrototype(pool.FindMessageTypeByName("mcplockd.v1.ListLocksResponse"))
        list_locks = channel.unary_unary(
            "/mcplockd.v1.LockService/ListLocks",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = list_locks(request_class(resource_prefix=""), timeout=TIMEOUT_S)
        out["list_locks"] = json_format.MessageToDict(response, preserving_proto_field_name=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
