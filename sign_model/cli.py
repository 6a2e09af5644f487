"""sign-mlops: one command per step. Heavy imports live inside the commands, so --help is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Train, track, export and batch-score Sign Language MNIST models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Synthesise, validate and explore Kaggle-format CSV files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for sign_mnist_train.csv and sign_mnist_test.csv.")] = Path("data/synthetic"),
    train_rows: Annotated[int, typer.Option(help="Rows in the training file.")] = 4800,
    test_rows: Annotated[int, typer.Option(help="Rows in the test file.")] = 1200,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
) -> None:
    """Write synthetic data in exactly the Kaggle format (24 learnable glyph classes)."""
    from sign_model.synthetic import synthesize_split

    with console.status("generating synthetic data..."):
        train, test = synthesize_split(out_dir, train_rows, test_rows, seed)
    out.print(f"wrote {train} ({train_rows} rows) and {test} ({test_rows} rows)")


@data_app.command("validate")
def data_validate(
    train: Annotated[Path, typer.Argument(help="Training CSV (.csv or .csv.gz).")],
    test: Annotated[Optional[Path], typer.Option(help="Test CSV, also checked for overlap with training.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the JSON report here.")] = None,
) -> None:
    """Run the validation gate; print per-class counts, errors and warnings. Exit 1 on errors."""
    from sign_model.validate import validate_files

    with console.status("validating..."):
        result = validate_files(train, test)
    _print_report(result)
    if report:
        result.write(report)
        out.print(f"report: {report}")
    if not result.passed:
        raise typer.Exit(1)


def _print_report(report) -> None:
    for name, info in report.files.items():
        counts = info.get("class_counts")
        if counts:
            table = Table(title=f"{name}: {info['rows']} rows", show_header=True)
            for letter in counts:
                table.add_column(letter, justify="right")
            table.add_row(*[str(v) for v in counts.values()])
            out.print(table)
    for key, value in report.stats.items():
        out.print(f"{key}: {value}")
    for finding in report.warnings:
        out.print(f"[yellow]warning[/] [{finding.check}] {finding.message}")
    for finding in report.errors:
        out.print(f"[red]ERROR[/] [{finding.check}] {finding.message}")
    out.print("[green]validation passed[/]" if report.passed else f"[red]validation failed: {len(report.errors)} error(s)[/]")


@data_app.command("explore")
def data_explore(
    train: Annotated[Path, typer.Argument(help="Training CSV.")],
    test: Annotated[Optional[Path], typer.Option(help="Test CSV.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the PNG files.")] = Path("outputs/figures"),
) -> None:
    """Draw a sample grid and class-count bar charts (PNG)."""
    from sign_model.data import DataFormatError, load_dataset
    from sign_model.explore import explore

    try:
        with console.status("drawing..."):
            paths = explore(load_dataset(train), load_dataset(test) if test else None, out_dir)
    except DataFormatError as exc:
        _fail(str(exc))
    for path in paths:
        out.print(f"wrote {path}")


@app.command("train")
def train(
    train_csv: Annotated[Optional[Path], typer.Option("--train", help="Training CSV (default: data/sign_mnist_train.csv[.gz], else synthetic data).")] = None,
    test_csv: Annotated[Optional[Path], typer.Option("--test", help="Test CSV (default: data/sign_mnist_test.csv[.gz]).")] = None,
    preset: Annotated[str, typer.Option(help="Config preset: default | seed | smoke.")] = "default",
    config: Annotated[Optional[Path], typer.Option(help="JSON/YAML file of config overrides on top of the preset.")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "sign-language-mnist",
    accuracy_floor: Annotated[float, typer.Option(help="Promotion gate: minimum test accuracy.")] = 0.90,
    tolerance: Annotated[float, typer.Option(help="Promotion gate: allowed accuracy drop vs the champion.")] = 0.002,
    int8: Annotated[bool, typer.Option(help="Also build and judge an INT8 ONNX variant.")] = True,
) -> None:
    """Run the whole training flow (Prefect): validate, explore, train, evaluate, export, register, promote."""
    from sign_model.train import PRESETS, TrainConfig

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    overrides = TrainConfig.from_file(config).to_dict() if config else {}
    from flows.training import training_flow
    from sign_model.pipeline import ValidationFailed

    try:
        result = training_flow(train=str(train_csv) if train_csv else None, test=str(test_csv) if test_csv else None,
                               preset=preset, overrides=overrides or None, experiment=experiment,
                               accuracy_floor=accuracy_floor, tolerance=tolerance, int8=int8)
    except (ValidationFailed, FileNotFoundError) as exc:
        _fail(str(exc))
    _print_training(result)


def _print_training(result: dict) -> None:
    from sign_model.config import tracking_uri

    table = Table(title=f"MLflow run {result['run_id']}", show_header=False)
    rows = [("data", f"{result['data']['train']}" + (" (SYNTHETIC)" if result["data"]["synthetic"] else "")),
            ("test accuracy", f"{result['test_accuracy']:.4%} ({int(result['test_errors'])} errors / {int(result['test_rows'])})"),
            ("test macro-F1", f"{result['test_macro_f1']:.4f}"),
            ("grouped validation accuracy", f"{result['val_accuracy']:.4%}"),
            ("training seconds", f"{result['train_seconds']:.0f}"),
            ("ONNX parity", f"argmax {result['parity']['argmax_agreement']:.2%}, max |dp| {result['parity']['max_abs_delta']:.1e}")]
    if result.get("int8"):
        i8 = result["int8"]
        rows.append(("INT8", f"{'registered' if i8['accepted'] else 'refused'}: {i8['reason']}, speed-up x{i8['int8_speedup']:.2f}"))
    p = result["promotion"]
    rows += [("registered", json.dumps(result["registered"])),
             ("promotion", ("PROMOTED" if p["promoted"] else "not promoted") + f" v{p['version']}"),
             ("champion", p["champion_uri"]), ("outputs", result["outputs"])]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    for reason in p["reasons"]:
        out.print(f"  {reason}")
    uri = tracking_uri()
    out.print(f"\nOpen the MLflow UI:  mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite")
              else f"\nMLflow UI: {uri}")


@app.command("promote")
def promote(
    accuracy_floor: Annotated[float, typer.Option(help="Minimum test accuracy.")] = 0.90,
    tolerance: Annotated[float, typer.Option(help="Allowed accuracy drop vs the champion.")] = 0.002,
    force: Annotated[bool, typer.Option(help="Promote even if the gate fails (needs --why).")] = False,
    why: Annotated[Optional[str], typer.Option(help="Reason for a forced promotion (recorded).")] = None,
) -> None:
    """Run the promotion gate on the ONNX challenger and record the decision."""
    from sign_model import registry, tracking

    tracking.configure()
    try:
        decision = registry.promote(registry.GatePolicy(accuracy_floor, tolerance), force=force, why=why)
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    out.print(decision.summary())
    if not decision.promoted:
        raise typer.Exit(2)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
