"""The data contract: CSV format rules, labels, the predictions schema, the score summary, drift,
paths and atomic files. numpy and pandas only; every other layer builds on it."""
