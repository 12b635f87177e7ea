"""Berth's model server: a drop-in replacement for TensorFlow Serving's tensorflow_model_server."""

__version__ = "0.1.0"
