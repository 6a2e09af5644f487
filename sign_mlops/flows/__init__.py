"""Prefect flows: thin tasks that wire sign_model and serving together; deployments' settings.

The library's own log messages (`logging.getLogger(__name__)` under `sign_mlops`) also
reach each flow run's log in Prefect (`sign_mlops.flows.logs.library_logs_to_prefect_runs`, set here
before the flows import Prefect; the CLI does it first thing)."""

from typing import Any

from sign_mlops.flows.logs import library_logs_to_prefect_runs

library_logs_to_prefect_runs()


def final_result(state: Any) -> Any:
    """What a flow run returned, whatever its final state (a flow that ends `Failed` on purpose
    carries its result as the state's data); an exception the run raised is raised here."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, BaseException):
        raise value
    return value


def rename_flow_run(name: str):
    """Rename the current Prefect flow run; returns its id (None outside a flow run)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return None
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=name)
    return flow_run.id


def api_url_for_workers() -> str | None:
    """The Prefect API this process reports to, for Dask worker processes to report to the same
    one: PREFECT_API_URL, or the temporary server Prefect started here when none is set (without
    it every worker would start a temporary server of its own and report its task runs there)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return str(PREFECT_API_URL.value())
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    return server.api_url if server is not None and server.running else None
