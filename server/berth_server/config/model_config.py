"""The model_config_list: read from TF Serving's text format, built from flags, and validated."""

from __future__ import annotations

import os

from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.config import text_protos
from berth_server.options import ServerOptions

_TYPE_NAME = "tensorflow.serving.ModelServerConfig"


def parse_text(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_protos.parse(text, model_server_config_pb2.ModelServerConfig(),
                             type_name=_TYPE_NAME)


def read_file(path: str) -> model_server_config_pb2.ModelServerConfig:
    return text_protos.read_file(path, model_server_config_pb2.ModelServerConfig(),
                                 type_name=_TYPE_NAME)


def from_options(opts: ServerOptions) -> model_server_config_pb2.ModelServerConfig:
    """The startup config: the config file, or a one-model list from --model_name/base_path."""
    if opts.model_config_file:
        return read_file(opts.model_config_file)
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = opts.model_name
    model.base_path = opts.model_base_path
    model.model_platform = "tensorflow"
    return config


def validate(config: model_server_config_pb2.ModelServerConfig,
             ) -> list[model_server_config_pb2.ModelConfig]:
    """Check a config as TF Serving's ServerCore does and return its model entries."""
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise errors.invalid_argument("ModelServerConfig must use model_config_list; "
                                      "custom_model_config is not supported")
    models = list(config.model_config_list.config)
    seen: set[str] = set()
    for model in models:
        if not model.name:
            raise errors.invalid_argument("ModelConfig has no name")
        if model.name in seen:
            raise errors.invalid_argument(f"Illegal to list model {model.name} multiple times "
                                          "in config list")
        seen.add(model.name)
        if not _is_absolute(model.base_path):
            raise errors.invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; got "
                f"base_path()={model.base_path}")
        has_type = model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED
        if has_type and model.model_platform:
            raise errors.invalid_argument(
                f"Illegal setting both model_type (deprecated) and model_platform for model "
                f"{model.name}")
        platform = model.model_platform or ("tensorflow" if has_type else "")
        if platform != "tensorflow":
            raise errors.invalid_argument(
                f"Model {model.name} has model_platform '{platform}'; only 'tensorflow' is "
                "supported" if platform else f"Illegal setting neither model_type (deprecated) "
                f"nor model_platform for model {model.name}")
        if model.HasField("logging_config"):
            raise errors.invalid_argument(
                "No request-logger-creator provided.")
    return models


def _is_absolute(base_path: str) -> bool:
    return os.path.isabs(base_path) or "://" in base_path
