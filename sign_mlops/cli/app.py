"""sign-mlops: one command per step. Heavy imports live inside the commands, so --help is instant."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from sign_mlops.cli import render
from sign_mlops.sign_model.gate import GatePolicy  # light: only the gate's defaults, shown in --help
from sign_mlops.sign_model.train_config import PRESETS  # light: no TensorFlow

# Quieter defaults; an explicit setting in the environment wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

EXIT_CODES = "Exit codes: 0 ok; 1 data, model, tracking or scoring error; 2 usage or config error; 3 trained (or gated) but not promoted."
app = typer.Typer(help="Train, track, export and batch-score Sign Language MNIST models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, epilog=EXIT_CODES)
_options = {"verbose": False, "debug": False}
data_app = typer.Typer(help="Synthesise, validate and explore Kaggle-format CSV files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # long paths and commands stay copy-pastable
out = Console(soft_wrap=True)


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_PROMOTED = 0, 1, 2, 3


def _fail(message: str, code: int = 1) -> None:
    """One line on stderr and an exit code; with --debug (or SIGN_MLOPS_DEBUG=1) the traceback too."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    if _options["debug"] and sys.exc_info()[0] is not None:
        console.print_exception()
    raise typer.Exit(code)


def _check_input_file(path: Path | None, option: str = "") -> None:
    """A usage error (exit 2, before any heavy import) when an input path is missing or a folder."""
    if path is None or (path.exists() and not path.is_dir()):
        return
    what = "is a folder" if path.is_dir() else "file not found"
    _fail(f"{option + ' ' if option else ''}{path}: {what}; pass a .csv or .csv.gz file.", 2)


def _show_version(value: bool) -> None:
    if value:
        from sign_mlops import __version__

        out.print(f"sign-mlops {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's start-up messages and library warnings.")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar="SIGN_MLOPS_DEBUG", help="Show tracebacks with errors.")] = False,
) -> None:
    """Train, track, export and batch-score Sign Language MNIST models."""
    _options.update(verbose=verbose, debug=debug)
    _log_to_console(verbose)


def _log_to_console(verbose: bool) -> None:
    """The library's own log messages (logging.getLogger(__name__)) on stderr: warnings, or
    everything with --verbose. Inside flows Prefect's run logger carries the step lines."""
    import logging

    from rich.logging import RichHandler

    from sign_mlops.flows.logs import LIBRARY_LOGGERS, library_logs_to_prefect_runs

    library_logs_to_prefect_runs()  # before anything imports Prefect
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        handler = next((h for h in logger.handlers if isinstance(h, RichHandler)), None)
        if handler is None:
            handler = RichHandler(console=console, show_time=False, show_path=False)
            logger.addHandler(handler)
        # INFO reaches the Prefect run log (flows/__init__.py); the console shows it with --verbose
        handler.setLevel(logging.INFO if verbose else logging.WARNING)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    if not verbose:  # the flow logs one line per step itself; Prefect's per-task lines are noise
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "WARNING")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # e.g. "Creating initial MLflow database tables"


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for sign_mnist_train.csv and sign_mnist_test.csv \\[default: <home>/outputs/synthetic-data].")] = None,
    train_rows: Annotated[int, typer.Option(min=1, max=10_000_000, help="Rows in the training file.")] = 4800,
    test_rows: Annotated[int, typer.Option(min=1, max=10_000_000, help="Rows in the test file.")] = 1200,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
) -> None:
    """Write synthetic data in exactly the Kaggle format (24 learnable glyph classes)."""
    from sign_mlops.contract.paths import default_paths
    from sign_mlops.sign_model.synthetic import synthesize_split

    out_dir = out_dir or default_paths().synthetic_dir
    with console.status("generating synthetic data..."):
        train, test = synthesize_split(out_dir, train_rows, test_rows, seed)
    out.print(f"wrote {train} ({train_rows} rows) and {test} ({test_rows} rows)")


@data_app.command("split")
def data_split(
    source: Annotated[Path, typer.Argument(help="A labelled Kaggle-format CSV, e.g. the Kaggle training file.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the two new files \\[default: <home>/data/holdout].")] = None,
    fraction: Annotated[float, typer.Option(min=0.01, max=0.5, help="Share of rows (whole near-copy groups) held out as test.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Split one file into train/test files that keep near-copy groups apart (an honest holdout)."""
    _check_input_file(source)
    from sign_mlops.contract.paths import default_paths
    from sign_mlops.sign_model.data import DataFormatError, load_dataset
    from sign_mlops.sign_model.split import grouped_split
    from sign_mlops.sign_model.synthetic import write_kaggle_csv

    out_dir = out_dir or default_paths().data_dir / "holdout"

    try:
        with console.status("grouping near-copies and writing..."):
            dataset = load_dataset(source)
            train_idx, test_idx = grouped_split(dataset.images, dataset.labels, fraction, seed)
            train = write_kaggle_csv(out_dir / "sign_mnist_train.csv", dataset.images[train_idx], dataset.labels[train_idx])
            test = write_kaggle_csv(out_dir / "sign_mnist_test.csv", dataset.images[test_idx], dataset.labels[test_idx])
    except (DataFormatError, ValueError) as exc:
        _fail(str(exc))
    out.print(f"wrote {train} ({len(train_idx)} rows) and {test} ({len(test_idx)} rows); no near-copy group straddles them")


@data_app.command("validate")
def data_validate(
    train: Annotated[Path, typer.Argument(help="Training CSV (.csv or .csv.gz).")],
    test: Annotated[Optional[Path], typer.Option(help="Test CSV, also checked for overlap with training.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the JSON report here.")] = None,
) -> None:
    """Run the validation gate; print per-class counts, errors and warnings. Exit 1 on errors."""
    _require("train", "data validate")
    _check_input_file(train)
    _check_input_file(test, "--test")
    if report and report.is_dir():
        _fail(f"--report {report} is a folder; pass a file name, e.g. {report / 'validation_report.json'}.", 2)
    from sign_mlops.sign_model.validate import validate_files

    with console.status("validating..."):
        result = validate_files(train, test)
    render.validation_report(out, result)
    if report:
        try:
            result.write(report)
        except OSError as exc:
            _fail(f"cannot write the report {report} ({exc.strerror}); pass a writable --report path.")
        out.print(f"report: {report}")
    if not result.passed:
        raise typer.Exit(1)


@data_app.command("explore")
def data_explore(
    train: Annotated[Path, typer.Argument(help="Training CSV.")],
    test: Annotated[Optional[Path], typer.Option(help="Test CSV.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the PNG files \\[default: <home>/outputs/figures].")] = None,
) -> None:
    """Draw a sample grid and class-count bar charts (PNG)."""
    _require("train", "data explore")
    _check_input_file(train)
    _check_input_file(test, "--test")
    from sign_mlops.contract.paths import default_paths
    from sign_mlops.sign_model.data import DataFormatError, load_dataset
    from sign_mlops.sign_model.explore import explore

    out_dir = out_dir or default_paths().figures_dir

    try:
        with console.status("drawing..."):
            paths = explore(load_dataset(train), load_dataset(test) if test else None, out_dir)
    except DataFormatError as exc:
        _fail(str(exc))
    for path in paths:
        out.print(f"wrote {path}")


# every preset, from the one list (a functional Enum: mypy cannot list its members)
Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)  # type: ignore[misc]


def with_gate_policy(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command one --option per GatePolicy field (declared once, in gate.py, with its help
    and default); the command receives them as one `policy: GatePolicy`."""
    gate_fields = fields(GatePolicy)
    options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                 annotation=Annotated[float, typer.Option(min=0.0, max=1.0, help=f.metadata["help"])])
               for f in gate_fields]
    hints = typing.get_type_hints(command, include_extras=True)  # the string annotations, resolved
    own = [p.replace(annotation=hints[name]) for name, p in inspect.signature(command).parameters.items()
           if name != "policy"]

    @functools.wraps(command)
    def with_policy(**kwargs: Any) -> None:
        policy = GatePolicy(**{f.name: kwargs.pop(f.name) for f in gate_fields})
        command(**kwargs, policy=policy)

    with_policy.__signature__ = inspect.Signature(own + options)  # type: ignore[attr-defined]
    with_policy.__annotations__ = {p.name: p.annotation for p in own + options}
    return with_policy


@app.command("train")
@with_gate_policy
def train(
    train_csv: Annotated[Optional[Path], typer.Option("--train", help="Training CSV (default: data/sign_mnist_train.csv[.gz], else synthetic data).")] = None,
    test_csv: Annotated[Optional[Path], typer.Option("--test", help="Test CSV (default: data/sign_mnist_test.csv[.gz]).")] = None,
    preset: Annotated[Preset, typer.Option(help="Config preset.")] = Preset("default"),
    config: Annotated[Optional[Path], typer.Option(help="JSON/YAML file of config overrides on top of the preset (only the keys it sets).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "sign-language-mnist",
    int8: Annotated[bool, typer.Option(help="Also build and judge an INT8 ONNX variant.")] = True,
    skip_if_unchanged: Annotated[bool, typer.Option(help="Skip when data digest and config equal the champion's.")] = False,
    policy: GatePolicy = GatePolicy(),
) -> None:
    """Run the whole training flow (Prefect): validate, explore, train, evaluate, export, register, promote.

    Exit 0 when the new model was promoted (or retraining was skipped), 3 when it was trained
    and registered but not promoted, 1 on a data, tracking or registration error, 2 on a usage
    or config error."""
    _require("train", "train")
    from sign_mlops.sign_model.train_config import ConfigError, config_sources, load_overrides, resolve_config

    try:
        overrides = load_overrides(config) if config else {}
        effective = resolve_config(preset.value, overrides)
    except ConfigError as exc:
        _fail(str(exc), 2)
    _check_input_file(train_csv, "--train")
    _check_input_file(test_csv, "--test")
    out.print(render.config_table(effective.to_dict(), config_sources(preset.value, overrides, f"file {config}")))
    from sign_mlops.flows.logs import prefect_console_without_tracebacks
    from sign_mlops.sign_model import tracking
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    try:  # fail in seconds, before any work, when the tracking store cannot be reached
        tracking.configure(experiment)
    except tracking.TrackingUnavailable as exc:
        _fail(str(exc))
    quiet_tensorflow(_options["verbose"])
    if not _options["debug"]:
        prefect_console_without_tracebacks()
    from sign_mlops.flows.training import training_flow
    from sign_mlops.sign_model.data import DataFormatError
    from sign_mlops.sign_model.export import ParityError
    from sign_mlops.sign_model.pipeline import RegistrationFailed, ValidationFailed
    from sign_mlops.sign_model.tracking import TrackingUnavailable

    try:
        result = training_flow(train=str(train_csv) if train_csv else None, test=str(test_csv) if test_csv else None,
                               preset=preset.value, overrides=overrides or None, experiment=experiment,
                               policy=policy, int8=int8, force=not skip_if_unchanged)
    except (ValidationFailed, RegistrationFailed, TrackingUnavailable, FileNotFoundError, DataFormatError,
            ParityError) as exc:
        _fail(str(exc))
    if result.skipped:
        out.print(f"Retraining skipped: {result.reason}.")
        return
    render.training_result(out, result)
    assert result.promotion is not None  # a run that was not skipped got as far as the gate
    if not result.promotion.promoted:
        raise typer.Exit(EXIT_NOT_PROMOTED)


@app.command("sweep")
@with_gate_policy
def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep file (YAML): presets, space, method, trials, seeds, rank_by (docs/sweeps.md).")],
    train_csv: Annotated[Optional[Path], typer.Option("--train", help="Training CSV (default: data/sign_mnist_train.csv, else synthetic data).")] = None,
    test_csv: Annotated[Optional[Path], typer.Option("--test", help="Test CSV (default: data/sign_mnist_test.csv).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Trials trained at once on a local Dask cluster (one process each).")] = 2,
    dask_address: Annotated[Optional[str], typer.Option(help="Train the trials on an existing Dask cluster, e.g. tcp://scheduler:8786.",
                                                        envvar="SIGN_MLOPS_DASK_ADDRESS")] = None,
    threads: Annotated[int, typer.Option(min=0, max=1024, help="TensorFlow threads per trial (0 = cores // workers).")] = 0,
    resume: Annotated[Optional[str], typer.Option(help="Parent run id of a sweep to finish: its finished trials are not trained again.")] = None,
    promote_best: Annotated[bool, typer.Option(help="Register the best trial and send it through the promotion gate.")] = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the sweep's runs.")] = "sign-language-mnist-sweeps",
    policy: GatePolicy = GatePolicy(),
) -> None:
    """Train many configurations in parallel and compare them: one MLflow parent run with a child
    run per trial, a ranked table and a Pareto plot. Nothing is registered unless --promote-best.

    Exit 0 when the sweep finished (failed trials are listed), 1 when every trial failed or the
    tracking store cannot be reached, 2 for a bad sweep file or option, 3 when --promote-best
    was refused by the gate."""
    if not spec.is_file():
        _fail(f"sweep file {spec}: {'is a folder' if spec.is_dir() else 'no such file'}; pass a YAML file "
              "(docs/sweeps.md shows one).", 2)
    _require("train", "sweep")
    from sign_mlops.sign_model import tracking
    from sign_mlops.sign_model.sweep import SweepError, load_spec

    try:
        load_spec(spec)  # a bad file is a usage error, before any cluster starts
        tracking.configure(experiment)
    except SweepError as exc:
        _fail(str(exc), 2)
    except tracking.TrackingUnavailable as exc:
        _fail(str(exc))
    from sign_mlops.flows.logs import prefect_console_without_tracebacks
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    quiet_tensorflow(_options["verbose"])
    if not _options["debug"]:
        prefect_console_without_tracebacks()
    from sign_mlops.flows import final_result
    from sign_mlops.flows.sweep import SweepResult, sweep_flow

    try:
        state = sweep_flow(str(spec), str(train_csv) if train_csv else None, str(test_csv) if test_csv else None,
                           workers, dask_address, threads, resume, promote_best, policy, experiment, return_state=True)
        result = final_result(state)
    except (SweepError, FileNotFoundError, tracking.TrackingUnavailable, ValueError, ConnectionError) as exc:
        _fail(str(exc), 2 if isinstance(exc, SweepError) else 1)
    assert isinstance(result, SweepResult)
    render.sweep_result(out, result)
    if state.is_failed():
        raise typer.Exit(1)
    if result.promotion is not None and not result.promotion.promoted:
        raise typer.Exit(EXIT_NOT_PROMOTED)


@app.command("register")
@with_gate_policy
def register(
    from_dir: Annotated[Path, typer.Option("--from", help="A run's folder, outputs/runs/<run id>, whose registration failed.")],
    policy: GatePolicy = GatePolicy(),
) -> None:
    """Finish a failed registration without retraining: register the run's Keras, ONNX and INT8
    models (versions already registered for the run are reused), then run the promotion gate.

    Exit 0 when promoted, 3 when the gate refused, 1 when the tracking server cannot be reached,
    2 when --from is not a run's folder."""
    _require("train", "register")
    if not from_dir.is_dir():
        _fail(f"--from {from_dir}: {'is a file' if from_dir.exists() else 'no such folder'}; pass a run's folder, "
              "outputs/runs/<run id> (its run_record.json says what to register).", 2)
    from sign_mlops.sign_model.results import RunRecord  # light: read the record before TensorFlow starts

    try:
        record = RunRecord.load(from_dir)
    except ValueError as exc:
        _fail(str(exc), 2)
    from sign_mlops.sign_model import pipeline, tracking
    from sign_mlops.sign_model.export import ParityError

    try:
        tracking.configure(experiment=None)
        registered = pipeline.register_step(record)
        promotion = pipeline.promote_step(policy)
    except (ValueError, ParityError, pipeline.RegistrationFailed, tracking.TrackingUnavailable, LookupError) as exc:
        _fail(str(exc))
    out.print(f"run {record.run_id}: keras v{registered.keras_version}, onnx v{registered.onnx_version}"
              + (f", int8 v{registered.int8_version}" if registered.int8_version else ""))
    out.print(("PROMOTED" if promotion.promoted else "not promoted") + f" v{promotion.version}")
    for reason in promotion.reasons:
        out.print(f"  {escape(reason)}")
    if not promotion.promoted:
        raise typer.Exit(EXIT_NOT_PROMOTED)


@app.command("promote")
@with_gate_policy
def promote(
    force: Annotated[bool, typer.Option(help="Promote even if the gate fails (needs --why).")] = False,
    why: Annotated[Optional[str], typer.Option(help="Reason for a forced promotion or a --version pin (recorded).")] = None,
    version: Annotated[Optional[int], typer.Option("--version", min=1, help="Make this ONNX version the champion without the gate: a rollback or a pin (needs --why; 'sign-mlops models' lists versions).")] = None,
    policy: GatePolicy = GatePolicy(),
) -> None:
    """Run the promotion gate on the ONNX challenger and record the decision; or, with --version,
    move the champion to that version (rollback), recorded the same way.

    Exit 0 when promoted, 3 when the gate refused, 1 when the registry cannot be reached or
    holds no challenger (or no such version), 2 on a usage error."""
    if (force or version is not None) and not (why and why.strip()):
        what = "--version" if version is not None else "--force"
        _fail(f"{what} needs --why with a reason (it is recorded on the version and the run).", 2)
    if force and version is not None:
        _fail("--force judges the challenger, --version pins a version: pass one of them.", 2)
    _require("train", "promote")
    from sign_mlops.flows.events import emit_promotion
    from sign_mlops.sign_model import pipeline, registry, tracking

    try:
        tracking.configure()
        if version is not None:
            promotion = pipeline.pin_step(str(version), why or "")
        else:
            promotion = pipeline.promote_step(policy, force=force, why=why)
    except (LookupError, ValueError, tracking.TrackingUnavailable) as exc:
        _fail(str(exc))
    except Exception as exc:  # the tracking server went away mid-call
        _fail(f"promotion stopped: MLflow at {tracking.shown_uri(tracking.tracking_uri())} failed mid-call "
              f"({tracking.short_reason(exc)}); check the server and run 'sign-mlops promote' again.")
    emit_promotion(promotion, registry.ONNX_MODEL)
    render.promotion(out, registry.ONNX_MODEL, promotion)
    if not promotion.promoted:
        raise typer.Exit(EXIT_NOT_PROMOTED)


@app.command("models")
def models(
    model: Annotated[str, typer.Option(help="Registered model to list (sign-mnist-onnx is what the scorer serves; also sign-mnist-keras, sign-mnist-onnx-int8).")] = "sign-mnist-onnx",
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N versions.")] = 20,
) -> None:
    """List registered versions: aliases (champion, challenger), test accuracy, robustness, INT8
    variant, and the last gate decision (when, and why).

    Exit 0, 1 when the registry cannot be reached or holds no such model."""
    _require("train", "models")
    from sign_mlops.sign_model import registry, tracking

    try:
        tracking.configure(experiment=None)
        rows = registry.list_versions(model)
    except (LookupError, tracking.TrackingUnavailable) as exc:
        _fail(str(exc))
    except Exception as exc:  # the tracking server went away mid-call
        _fail(f"listing {model} failed talking to MLflow at {tracking.tracking_uri()} ({type(exc).__name__}); "
              "check the server and MLFLOW_TRACKING_URI.")
    render.versions_table(out, rows[:limit], tracking.tracking_uri())


@app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="First model: champion, challenger, a version (3 or v3), models:/... or an .onnx file.")],
    b: Annotated[str, typer.Argument(help="Second model, named the same ways.")],
    data: Annotated[Path, typer.Option(help="A labelled CSV in the Kaggle format (label, pixel1..pixel784), .csv or .csv.gz.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for comparison.json and comparison.png \\[default: <home>/outputs/compare/<time>].")] = None,
    run: Annotated[Optional[str], typer.Option(help="An MLflow run id: log the comparison's metrics, JSON and PNG to it.")] = None,
    pairs: Annotated[int, typer.Option(min=1, max=20, help="Alternating pairs of whole-file scorer runs timed for speed.")] = 3,
    robust_rows: Annotated[int, typer.Option(min=100, max=100_000, help="Rows of the file the shift suite runs on.")] = 1500,
) -> None:
    """Score two models on the same labelled file: accuracy, per-letter accuracy, agreement,
    robustness (the gate's shift suite on the file's rows) and scorer speed; a table, a JSON and
    a PNG, logged to an MLflow run with --run.

    Exit 0, 1 when a model cannot be loaded or the run cannot be logged to, 2 for a usage error
    (missing or unlabelled file)."""
    if not data.is_file():
        _fail(f"--data {data}: {'is a folder' if data.is_dir() else 'no such file'}; pass a labelled CSV file.", 2)
    _require("train", "compare")
    from datetime import datetime, timezone

    from sign_mlops.contract.csvformat import DataFormatError
    from sign_mlops.contract.files import write_json_atomically
    from sign_mlops.contract.paths import default_paths
    from sign_mlops.sign_model.compare import CompareError, model_uri, plot_comparison
    from sign_mlops.sign_model.compare import compare as compare_models

    out_dir = out_dir or default_paths().outputs_dir / "compare" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    _check_out_dir(out_dir)
    models = [_load_model(model_uri(spec)) for spec in (a, b)]
    out_dir.mkdir(parents=True, exist_ok=True)
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="compare-", dir=out_dir) as scratch:
            result = compare_models(models[0], models[1], (a, b), data, Path(scratch), pairs, robust_rows)
    except (CompareError, DataFormatError) as exc:
        _fail(str(exc), 2)
    outputs = [write_json_atomically(result.to_dict(), out_dir / "comparison.json"),
               plot_comparison(result, out_dir / "comparison.png")]
    render.comparison(out, result, outputs)
    if run:
        _log_comparison(run, result, outputs)


def _log_comparison(run_id: str, result, outputs: list[Path]) -> None:
    """Metrics and files onto an existing run (the run is left as it was: not re-opened)."""
    from sign_mlops.sign_model import tracking

    try:
        tracking.configure(experiment=None)
        tracking.log_to_run(run_id, result.metrics(), outputs, artifact_path="compare")
    except tracking.TrackingUnavailable as exc:
        _fail(str(exc))
    except Exception as exc:  # no such run, or the server went away
        _fail(f"could not log to run {run_id} at {tracking.shown_uri(tracking.tracking_uri())} "
              f"({tracking.short_reason(exc)}); the outputs above are kept. Check the run id ('mlflow runs list').")
    out.print(f"logged to run {run_id}: {tracking.run_ui_url(run_id)}")


def _expand_inputs(inputs: list[str]) -> list[Path]:
    """An existing path is taken literally (`b[1].csv` is that file); otherwise a pattern with
    * ? [ is expanded. The same file twice is scored once."""
    import glob

    files: list[Path] = []
    for item in inputs:
        if Path(item).exists() or not any(ch in item for ch in "*?["):
            matches = [item]
        else:
            matches = sorted(glob.glob(item))
            if not matches:
                _fail(f"no file matches {item!r}; check the pattern (quote it so the shell does not expand it).")
        files += [Path(m) for m in matches]
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _check_output_names(files: list[Path], out_dir: Path) -> None:
    """Two inputs must never write the same outputs (a.csv and a.csv.gz; a.csv in two folders)."""
    from sign_mlops.serving.scorer import input_stem

    seen: dict[str, Path] = {}
    for path in files:
        stem = input_stem(path)
        if stem in seen:
            _fail(f"{seen[stem]} and {path} would both write {out_dir / stem}.predictions.csv; score them in two "
                  "calls with different --out folders, or rename one.", 2)
        seen[stem] = path


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir} is an existing file, not a folder; pass a folder (it is created if missing).", 2)
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        _fail(f"--out {out_dir}: {probe} is not writable; pass a folder you can write to.", 2)


@app.command("score")
def score(
    inputs: Annotated[list[str], typer.Argument(help="CSV files (.csv, .csv.gz) or quoted globs in the Kaggle pixel format; 'label' optional.")],
    model: Annotated[str, typer.Option(help="An .onnx file or models:/<name>@<alias> from the MLflow registry.")] = "models:/sign-mnist-onnx@champion",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for <name>.predictions.csv, .rejects.csv, .summary.json \\[default: <home>/outputs/scores].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    chunk_rows: Annotated[int, typer.Option(min=1, max=1_000_000, help="Rows parsed per chunk (memory stays flat).")] = 4096,
    batch_size: Annotated[int, typer.Option(min=1, max=65536, help="Rows per onnxruntime call.")] = 256,
    threads: Annotated[int, typer.Option(min=0, max=1024, help="onnxruntime intra-op threads (0 = all cores).")] = 0,
    dask_address: Annotated[Optional[str], typer.Option(help="Fan out over a Dask cluster, e.g. tcp://scheduler:8786.",
                                                        envvar="SIGN_MLOPS_DASK_ADDRESS")] = None,
) -> None:
    """Batch-score CSV files with an ONNX model: predictions, rejects and a summary per file.

    Exit 0 when every file was scored (rejected rows included), 1 when a file could not be
    scored or the model cannot be loaded, 2 for a usage error."""
    from sign_mlops.contract.paths import default_paths
    from sign_mlops.serving.outputs import sigterm_as_exception

    out_dir = out_dir or default_paths().scores_dir
    files = _expand_inputs(inputs)
    _check_output_names(files, out_dir)
    _check_out_dir(out_dir)
    with sigterm_as_exception():
        if dask_address:
            _require("orchestrate", "score --dask-address")
            _score_on_cluster(files, model, out_dir, overwrite, dask_address)
            return
        _score_here(files, model, out_dir, overwrite, chunk_rows, batch_size, threads)


def _score_on_cluster(files: list[Path], model: str, out_dir: Path, overwrite: bool, address: str) -> None:
    """Each file's line-aligned pieces fan out over the Dask cluster (Prefect flow); the merged
    outputs are byte-identical to scoring here."""
    from sign_mlops.flows import final_result
    from sign_mlops.flows.scoring import FilesScored, dask_runner, score_files_flow
    from sign_mlops.serving.model import ModelError
    from sign_mlops.serving.scorer import ScoringError

    try:
        runner = dask_runner(address)
        state = score_files_flow.with_options(task_runner=runner)([str(f) for f in files], model, str(out_dir),
                                                                  overwrite, return_state=True)
        result: FilesScored = final_result(state)
    except (ScoringError, ModelError) as exc:
        _fail(str(exc))
    for summary in result.summaries.values():
        render.scoring_summary(out, summary)
    for name, reason in result.failed.items():
        console.print(f"[bold red]error:[/] {escape(f'{name}: {reason}')}")
    if result.failed:
        raise typer.Exit(1)


def _load_model(spec: str, threads: int = 0):
    from sign_mlops.contract.paths import default_paths
    from sign_mlops.flows.model_source import load_scoring_model
    from sign_mlops.serving.model import ModelError

    try:
        return load_scoring_model(spec, default_paths().model_cache, threads)
    except ModelError as exc:
        _fail(str(exc))


def _score_here(files: list[Path], model: str, out_dir: Path, overwrite: bool, chunk_rows: int, batch_size: int,
                threads: int) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sign_mlops.serving.outputs import OutputExistsError
    from sign_mlops.serving.scorer import ScoringError, score_file

    loaded = _load_model(model, threads)
    failures = 0
    for path in files:
        total = path.stat().st_size if path.is_file() and not path.name.lower().endswith(".gz") else None
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rows]} rows"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task(f"scoring {escape(path.name)}", total=total, rows=0)

            def advance(rows: int, nbytes: int, task=task) -> None:
                progress.update(task, advance=nbytes, rows=progress.tasks[task].fields["rows"] + rows)

            try:
                summary = score_file(path, loaded, out_dir, overwrite, chunk_rows, batch_size, on_progress=advance)
            except (ScoringError, OutputExistsError) as exc:
                console.print(f"[bold red]error:[/] {escape(str(exc))}")
                failures += 1
                if isinstance(exc, ScoringError) and exc.machine:
                    break
                continue
        render.scoring_summary(out, summary)
    if failures:
        raise typer.Exit(1)


@app.command("score-inbox")
def score_inbox_command(
    inbox: Annotated[Optional[Path], typer.Option(help="Folder where new CSV files arrive \\[default: $SIGN_MLOPS_INBOX, else <home>/inbox].")] = None,
    outbox: Annotated[Optional[Path], typer.Option(help="Folder for outputs (one sub-folder per scored file) and manifest.json \\[default: $SIGN_MLOPS_OUTBOX, else <home>/outbox].")] = None,
    model: Annotated[str, typer.Option(help="An .onnx file or models:/<name>@<alias>.")] = "models:/sign-mnist-onnx@champion",
    every: Annotated[int, typer.Option(min=0, help="Seconds between runs; 0 = run once and exit.")] = 0,
    settle_seconds: Annotated[float, typer.Option(min=0, max=86400, help="A file is claimed only when unchanged this long (and not open for writing).")] = 5.0,
    rebuild_manifest: Annotated[bool, typer.Option("--rebuild-manifest", help="Rebuild outbox/manifest.json from the outputs' summaries, then exit.")] = False,
    dask_address: Annotated[Optional[str], typer.Option(help="Fan out over a Dask cluster, e.g. tcp://scheduler:8786.",
                                                        envvar="SIGN_MLOPS_DASK_ADDRESS")] = None,
) -> None:
    """Score every complete file in the inbox once per model (Prefect flow), once or on an interval.

    Write files into the inbox as <name>.partial (or a hidden name) and rename them when
    complete. Exit 0 when no file failed, 1 when one did (it is in inbox/failed/ with a reason)."""
    from sign_mlops.contract.paths import default_paths

    paths = default_paths()
    inbox, outbox = inbox or paths.inbox, outbox or paths.outbox
    if rebuild_manifest:
        from sign_mlops.serving.inbox import rebuild_manifest as rebuild

        manifest = rebuild(outbox)
        out.print(f"rebuilt {outbox / 'manifest.json'}: {len(manifest['scored'])} scored file(s)")
        return
    _require("orchestrate", "score-inbox")
    _check_out_dir(outbox)
    if inbox.exists() and not inbox.is_dir():
        _fail(f"--inbox {inbox} is a file, not a folder; pass the folder where new CSV files arrive.", 2)
    from sign_mlops.flows import final_result
    from sign_mlops.flows.scoring import InboxRun, inbox_scoring_flow
    from sign_mlops.serving.model import ModelError
    from sign_mlops.serving.outputs import sigterm_as_exception
    from sign_mlops.serving.scorer import ScoringError

    inbox.mkdir(parents=True, exist_ok=True)
    parameters = {"inbox": str(inbox.resolve()), "outbox": str(outbox.resolve()), "model": model,
                  "dask_address": dask_address, "settle_s": settle_seconds}
    if every > 0:
        inbox_scoring_flow.serve(name="inbox-scoring", interval=every, parameters=parameters)
        return
    if not _options["debug"]:
        from sign_mlops.flows.logs import prefect_console_without_tracebacks

        prefect_console_without_tracebacks()
    with sigterm_as_exception():
        state = inbox_scoring_flow(inbox=str(inbox.resolve()), outbox=str(outbox.resolve()), model=model,
                                   dask_address=dask_address, settle_s=settle_seconds, return_state=True)
    try:
        result: InboxRun = final_result(state)
    except (ScoringError, ModelError) as exc:  # e.g. the Dask scheduler cannot be reached
        _fail(str(exc))
    if result.error:
        _fail(result.error)
    if result.busy:
        out.print(escape(f"another score-inbox run is working on {inbox}; nothing done (it scores the files)."))
        return
    out.print(escape(f"scored {result.scored}, skipped {result.skipped}, failed {list(result.failed)}, "
                     f"waiting {list(result.waiting)}"))
    for name, folder in result.outputs.items():
        out.print(escape(f"  {name} -> {folder}"))
    for name, reason in {**result.failed, **result.waiting, **result.ignored}.items():
        out.print(escape(f"  {name}: {reason}"))
    if result.failed:
        raise typer.Exit(1)


class Served(str, Enum):
    all = "all"
    training = "training"
    scoring = "scoring"


@app.command("serve")
def serve(
    only: Annotated[Served, typer.Option("--only", help="Serve both deployments, or one (the training and the scoring image each serve theirs).")] = Served.all,
) -> None:
    """Long-running service: retraining on a cron schedule, inbox scoring on an interval (Prefect serve).

    Settings from the environment: SIGN_MLOPS_RETRAIN_CRON (default '0 3 * * *'),
    SIGN_MLOPS_SCORE_INTERVAL (seconds, 300), SIGN_MLOPS_INBOX / SIGN_MLOPS_OUTBOX,
    SIGN_MLOPS_MODEL_URI, SIGN_MLOPS_PRESET, plus MLFLOW_TRACKING_URI and PREFECT_API_URL.
    A scheduled retraining skips (and says so) when data and config equal the champion's.
    """
    _require("train" if only != Served.scoring else "orchestrate", f"serve --only {only.value}")
    from prefect import serve as prefect_serve

    from sign_mlops.flows.settings import ServiceSettings

    try:
        settings = ServiceSettings.from_env()
    except ValueError as exc:
        _fail(str(exc), 2)
    deployments = []
    if only != Served.scoring:
        deployments.append(_training_deployment(settings))
    if only != Served.training:
        settings.inbox.mkdir(parents=True, exist_ok=True)
        deployments.append(_scoring_deployment(settings))
    out.print(f"serving {only.value}: retraining '{settings.retrain_cron}', inbox scoring every "
              f"{settings.score_interval_s}s ({settings.inbox} -> {settings.outbox}); Ctrl-C stops (schedules stay active).")
    prefect_serve(*deployments, pause_on_shutdown=False)


# Module-path entrypoints (sign_mlops.flows.training.training_flow), not file paths: a file path makes
# Prefect load the flow module as top-level `scoring`, and cloudpickle then ships
# `scoring.score_piece` by reference to Dask workers, which cannot import it.
def _training_deployment(settings):
    from prefect.types.entrypoint import EntrypointType

    from sign_mlops.flows.training import training_flow

    return training_flow.to_deployment(
        name="scheduled-retraining", cron=settings.retrain_cron, entrypoint_type=EntrypointType.MODULE_PATH,
        parameters={"preset": settings.preset, "force": False}, description="Retrain when data or config changed.")


def _scoring_deployment(settings):
    from prefect.types.entrypoint import EntrypointType

    from sign_mlops.flows.scoring import inbox_scoring_flow

    return inbox_scoring_flow.to_deployment(
        name="inbox-scoring", interval=settings.score_interval_s, entrypoint_type=EntrypointType.MODULE_PATH,
        parameters={"inbox": str(settings.inbox), "outbox": str(settings.outbox), "model": settings.model_uri,
                    "dask_address": os.environ.get("SIGN_MLOPS_DASK_ADDRESS")})


EXTRAS = {"train": ("tensorflow", "tf2onnx", "mlflow", "pandera", "matplotlib", "prefect"),
          "orchestrate": ("prefect", "prefect_dask", "distributed")}


def _require(extra: str, command: str) -> None:
    """Say which extra a command needs when this is the light (scoring-only) install."""
    import importlib.util

    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"'sign-mlops {command}' needs the '{extra}' extra ({', '.join(missing)} not installed); this looks "
              f"like the scoring-only install. Install it with: pip install 'sign-mlops[{extra}]'.", 2)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
