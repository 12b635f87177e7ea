"""tensorflow.serving.Input (lists of tf.Example) as the serialized batch a signature takes."""

from __future__ import annotations

from tensorflow_serving.apis import input_pb2

from berth_server import errors


def serialized_examples(request_input: input_pb2.Input) -> list[bytes]:
    """One serialized Example per input example; a context is merged into each (proto merge)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        context = listed.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in listed.examples]
    else:
        examples = []
    if not examples:
        raise errors.invalid_argument("Input is empty.")
    return examples
