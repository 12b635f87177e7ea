"""What `--version` prints, in TF Serving's two-line form."""

from __future__ import annotations

import berth_server


def text() -> str:
    import tensorflow as tf

    return (f"TensorFlow ModelServer: {berth_server.__version__}-berth\n"
            f"TensorFlow Library: {tf.__version__}")
