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


class _NoTraceback:
    """Logging filter for a console handler: keep the message, drop the traceback (the run's
    log in the Prefect UI, written by a handler that runs first, still has it)."""

    def filter(self, record) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def prefect_console_without_tracebacks() -> None:
    """Errors inside flows print as one line on the console; use --debug to see tracebacks."""
    import logging

    from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging

    if not PROCESS_LOGGING_CONFIG:
        setup_logging()  # later calls by Prefect are incremental: they keep these handlers
    loggers = [logging.getLogger(name) for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs")]
    for handler in (h for logger in loggers for h in logger.handlers):
        if handler.__class__.__name__ != "PrefectConsoleHandler":
            continue
        if not any(isinstance(f, _NoTraceback) for f in handler.filters):
            handler.addFilter(_NoTraceback())


LIBRARY_LOGGERS = ("sign_model", "serving")


def library_logs_to_prefect_runs() -> None:
    """The library's own log messages also go to the Prefect run log: our loggers are Prefect
    "extra loggers" (its API handler only, so the console shows nothing twice) at INFO. Must run
    before Prefect sets up logging (before `import prefect`); a value the operator set wins."""
    import logging

    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(LIBRARY_LOGGERS))
    # library calls outside any run (e.g. `sign-mlops promote`) are not errors of a missing run
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    for name in LIBRARY_LOGGERS:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)
