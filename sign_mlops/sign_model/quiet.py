"""A quiet console: TensorFlow's C++ start-up chatter (oneDNN, CUDA probing, an alarming
`E0000 ... cuInit` on a CPU machine) and known harmless warnings are hidden unless asked for.

TensorFlow 2.21 writes those lines through absl before any log level applies, so the only
reliable way to hide them is to point file descriptor 2 at /dev/null while TensorFlow is
imported and probes its devices. Python errors are unaffected: they are raised after the
descriptor is restored.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

HARMLESS_WARNINGS = (
    (".*shuffle=True. was passed", UserWarning),
    ("The specified dataset source can be interpreted", UserWarning),
    (".*Your `PyDataset` class should call", UserWarning),
    (".*np.find_common_type is deprecated", DeprecationWarning),
)


@contextmanager
def stderr_muted() -> Iterator[None]:
    """Send everything written to file descriptor 2 (C/C++ code included) to /dev/null."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow now, silently (unless verbose), and filter known harmless warnings."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for message, category in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    with stderr_muted():
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.get_logger().setLevel("ERROR")
