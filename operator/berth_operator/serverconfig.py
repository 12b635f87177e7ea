"""The server's config files as TF Serving text protos: models.config and batching.config.

Each track's server loads exactly one version (model_version_policy specific), so the stable and
canary tracks get one models.config each; batching.config is shared.
"""

from berth_operator import naming, spec


def base_path(md: spec.ModelDeploymentSpec) -> str:
    """The model's base path as the server reads it: the store's URI, or the volume's mount."""
    if isinstance(md.storage, spec.UriSource):
        return md.storage.uri
    return naming.model_base_path(md.model_name)


def models_config(model: str, base_path: str, version: int) -> str:
    """ModelServerConfig text with one model pinned to one version."""
    return (
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{model}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      specific {\n"
        f"        versions: {version}\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


def batching_config(batching: spec.Batching) -> str:
    """BatchingParameters text; wrapper-typed fields use TF Serving's `{ value: N }` form."""
    wrapped = [
        ("max_batch_size", batching.max_batch_size),
        ("batch_timeout_micros", batching.batch_timeout_micros),
        ("max_enqueued_batches", batching.max_enqueued_batches),
        ("num_batch_threads", batching.num_batch_threads),
    ]
    lines = [f"{name} {{ value: {value} }}" for name, value in wrapped if value is not None]
    lines += [f"allowed_batch_sizes: {size}" for size in batching.allowed_batch_sizes]
    if batching.pad_variable_length_inputs is not None:
        lines.append(
            f"pad_variable_length_inputs: {str(batching.pad_variable_length_inputs).lower()}"
        )
    return "".join(line + "\n" for line in lines)
