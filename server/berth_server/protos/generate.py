"""Regenerate (or, with --check, verify) the Python code of the protos in `protos/`.

Official TF Serving messages are imported from the tensorflow-serving-api wheel's descriptors
(`--descriptor_set_in`), never from copied .proto files.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from grpc_tools import protoc

_PACKAGE_DIR = Path(__file__).resolve().parent
_PROTO_ROOT = _PACKAGE_DIR.parents[2] / "protos"


def _official_descriptor_set(path: Path) -> None:
    """Write a FileDescriptorSet of the wheel's PredictRequest and everything it imports."""
    from tensorflow_serving.apis import predict_pb2

    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        for dependency in file.dependencies:
            visit(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        seen[file.name] = proto

    visit(predict_pb2.DESCRIPTOR)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(seen.values())).SerializeToString())


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto under protos/ into flat `*_pb2*.py` modules in `out_dir`."""
    protos = sorted(_PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        descriptors = tmp_dir / "official.pb"
        _official_descriptor_set(descriptors)
        import grpc_tools

        well_known = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "protoc",
            f"-I{_PROTO_ROOT}",
            f"-I{well_known}",
            f"--descriptor_set_in={descriptors}",
            f"--python_out={tmp_dir}",
            f"--pyi_out={tmp_dir}",
            f"--grpc_python_out={tmp_dir}",
            *(str(p.relative_to(_PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        for generated in sorted(tmp_dir.rglob("*_pb2*.py*")):
            text = generated.read_text()
            if generated.name.endswith("_grpc.py") and "class " not in text:
                continue  # a .proto without services gets an empty _grpc module
            target = out_dir / generated.name
            target.write_text(_flatten_imports(text))
            written.append(target)
        return written


def _flatten_imports(text: str) -> str:
    """Our generated modules live flat in berth_server.protos; point imports there."""
    return text.replace("from berth.serving import ", "from berth_server.protos import ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    if not args.check:
        for path in generate(_PACKAGE_DIR):
            print(f"wrote {path.relative_to(_PACKAGE_DIR.parents[1])}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [p.name for p in fresh if not filecmp.cmp(p, _PACKAGE_DIR / p.name, shallow=False)
                 if (_PACKAGE_DIR / p.name).exists()]
        missing = [p.name for p in fresh if not (_PACKAGE_DIR / p.name).exists()]
    if stale or missing:
        sys.exit(f"generated protos are stale: {stale + missing}; run `make protos`")
    print("generated protos are up to date")


if __name__ == "__main__":
    main()
