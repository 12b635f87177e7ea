"""GetModelStatus over the manager's version states, for the gRPC ModelService and REST alike.

With several worker processes each has its own manager; `combined` makes their rows one answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_status_pb2, status_pb2

from berth_server import errors
from berth_server.core.servable_state import State, VersionStatus


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


def combined_state(states: Sequence[State]) -> State:
    """One version's state over every worker: AVAILABLE only once it is AVAILABLE in all of
    them; UNLOADING as soon as one has started unloading it (it is on its way out) until all
    have reached END; otherwise the least advanced (START before LOADING before AVAILABLE)."""
    if len(set(states)) == 1:
        return states[0]
    if any(state >= State.UNLOADING for state in states):
        return State.UNLOADING
    return min(states)


def combined(per_worker: Sequence[Sequence[VersionStatus]]) -> list[VersionStatus]:
    """Every worker's rows for one model as one list, by version. A worker without a row for a
    version has not seen it yet (START); a failed load anywhere is reported with its error."""
    by_version: dict[int, list[VersionStatus]] = {}
    for rows in per_worker:
        for row in rows:
            by_version.setdefault(row.version, []).append(row)
    result = []
    for version, rows in sorted(by_version.items()):
        failed = next((row for row in rows if row.error is not None), None)
        if failed is not None:
            result.append(failed)
            continue
        unseen = [State.START] * (len(per_worker) - len(rows))
        result.append(VersionStatus(version, combined_state([*(r.state for r in rows), *unseen])))
    return result
