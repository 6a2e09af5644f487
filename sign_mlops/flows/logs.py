"""Logging between the library and Prefect: library messages reach the run log, and errors
inside flows print as one line on the console (tracebacks stay in the Prefect UI)."""

from __future__ import annotations

import os


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


LIBRARY_LOGGERS = ("sign_mlops",)


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
