"""Rebuild tensorboard's compat protos as a FileDescriptorSet from the tensorboard wheel.

ONNX Runtime's training build compiles tensorboard/compat/proto/*.proto, fetched from a
GitHub archive. Neither Debian's archive nor PyPI carries those .proto files, but the
tensorboard wheel carries every one of them as the serialized FileDescriptorProto in its
*_pb2.py modules. protoc generates C++ from such a set (--descriptor_set_in), so the
same messages come out without the .proto text.

Usage: tensorboard_descriptors.py WHEEL OUT.pb  (writes OUT.pb and OUT.pb.files)
"""

import ast
import sys
import zipfile

PREFIX = "tensorboard/compat/proto/"


def serialized_descriptor(source: str) -> bytes:
    """Return the bytes literal passed to AddSerializedFile in a generated _pb2 module."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            return ast.literal_eval(node.args[0])
    raise ValueError("no AddSerializedFile call")


def varint(n: int) -> bytes:
    """Protobuf base-128 varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def main() -> int:
    """Write the descriptor set (field 1 of FileDescriptorSet, repeated) and the proto list."""
    wheel, out = sys.argv[1], sys.argv[2]
    names, blob = [], bytearray()
    with zipfile.ZipFile(wheel) as z:
        for member in sorted(z.namelist()):
            if member.startswith(PREFIX) and member.endswith("_pb2.py"):
                desc = serialized_descriptor(z.read(member).decode())
                blob += b"\x0a" + varint(len(desc)) + desc
                names.append(member[: -len("_pb2.py")] + ".proto")
    if not names:
        print(f"no {PREFIX}*_pb2.py in {wheel}", file=sys.stderr)
        return 1
    with open(out, "wb") as f:
        f.write(blob)
    with open(out + ".files", "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"{len(names)} tensorboard protos -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
