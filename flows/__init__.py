"""Prefect flows: thin tasks that wire sign_model/ and serving/ together.

The library's own log messages (`logging.getLogger(__name__)` in sign_model/ and serving/) are
also sent to the flow run's log in Prefect, through Prefect's extra-loggers setting (its API
handler only; the console keeps what it had). Set here, before Prefect is imported by the flows;
an environment value set by the operator wins."""

import logging
import os

LIBRARY_LOGGERS = ("sign_model", "serving")

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(LIBRARY_LOGGERS))
# library calls outside any run (e.g. `sign-mlops promote`) are not errors of a missing run
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
for _name in LIBRARY_LOGGERS:
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)
