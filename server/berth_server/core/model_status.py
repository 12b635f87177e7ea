"""GetModelStatus over the manager's version states, for the gRPC ModelService and REST alike."""

from __future__ import annotations

from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_status_pb2, status_pb2

from berth_server import errors
from berth_server.core.servable_state import VersionStatus


def model_status(rows: list[VersionStatus], name: str,
                 version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
    """Every tracked version of `name`, or only `version`; NOT_FOUND in TF Serving's words.

    A version label never narrows the answer: TF Serving ignores it here.
    """
    if version is not None:
        rows = [row for row in rows if row.version == version]
        if not rows:
            raise errors.not_found(f"Could not find version {version} of model {name}")
    elif not rows:
        raise errors.not_found(f"Could not find any versions of model {name}")
    return get_model_status_pb2.GetModelStatusResponse(model_version_status=[
        get_model_status_pb2.ModelVersionStatus(version=row.version, state=int(row.state),
                                                status=status_proto(row.error))
        for row in rows])


def status_proto(error: errors.ServingError | None) -> status_pb2.StatusProto:
    if error is None:
        return status_pb2.StatusProto(error_code=error_codes_pb2.OK)
    return status_pb2.StatusProto(error_code=int(error.code), error_message=error.message)
