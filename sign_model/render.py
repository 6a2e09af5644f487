"""How results look on the console (rich); `cli.py` only declares commands and calls these.

Everything that comes from data or the user (file names, reasons) is escaped, so a name like
`b[1].csv` prints as written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sign_model.results import TrainingResult


def config_table(values: dict, sources: dict[str, str]) -> Table:
    """The effective training config: value and where it came from (file, preset or default)."""
    table = Table(title="training config", show_header=True)
    table.add_column("setting")
    table.add_column("value", justify="right")
    table.add_column("from")
    for key, value in values.items():
        table.add_row(key, escape(str(value)), escape(sources[key]))
    return table


def class_count_table(title: str, counts: dict[str, int], pairs: int = 4) -> Table:
    """Rows per letter as a compact grid (letter, rows) x pairs, readable in 80 columns."""
    table = Table(title=escape(title))
    for _ in range(pairs):
        table.add_column("letter")
        table.add_column("rows", justify="right")
    items = list(counts.items())
    height = -(-len(items) // pairs)
    for r in range(height):
        cells: list[str] = []
        for c in range(pairs):
            i = c * height + r
            cells += [items[i][0], str(items[i][1])] if i < len(items) else ["", ""]
        table.add_row(*cells)
    return table


def validation_report(out: Console, report) -> None:
    for name, info in report.files.items():
        counts = info.get("class_counts")
        if counts:
            out.print(class_count_table(f"{name}: {info['rows']} rows", counts))
    for key, value in report.stats.items():
        out.print(f"{key}: {value}")
    for finding in report.warnings:
        out.print(f"[yellow]warning[/] {escape(f'[{finding.check}] {finding.message}')}")
    for finding in report.errors:
        out.print(f"[red]ERROR[/] {escape(f'[{finding.check}] {finding.message}')}")
    out.print("[green]validation passed[/]" if report.passed else f"[red]validation failed: {len(report.errors)} error(s)[/]")


def confidence_row(confidence: dict[str, float] | None) -> list[tuple[str, str]]:
    """What the scorer's confidence would say on the test split (none for records that predate it)."""
    if not confidence:
        return []
    caught = (f", {confidence['errors_flagged']:.0%} of the errors among them" if "errors_flagged" in confidence
              else "")
    return [("test confidence", f"mean {confidence['mean_confidence']:.3f}; {confidence['low_confidence']:.1%} of rows "
                                f"under the scorer's low-confidence threshold{caught}; calibration error "
                                f"{confidence['calibration_error']:.3f}")]


def result_rows(result: TrainingResult) -> list[tuple[str, str]]:
    """The facts of a finished training run, as (name, value): the console table and the
    Prefect markdown artifact both show these."""
    evaluated, trained, exported, promotion = result.evaluated, result.trained, result.exported, result.promotion
    rows = [("data", f"{result.data.train}{' (SYNTHETIC)' if result.data.synthetic else ''}, "
                     f"sha256 {result.data.train_sha256[:12]}"),
            ("test accuracy", f"{evaluated.test_accuracy:.4%} ({evaluated.test_errors} errors / {evaluated.test_rows})"),
            ("test macro-F1", f"{evaluated.test_macro_f1:.4f}"),
            *confidence_row(evaluated.confidence),
            ("grouped validation accuracy", f"{trained.val_accuracy:.4%}"),
            ("training seconds", f"{trained.train_seconds:.0f}")]
    if trained.hand_detector:
        rows.append(("left-hand detector", trained.hand_detector))
    if trained.teacher:
        rows.append(("distilled from", trained.teacher))
    if result.robustness is not None:
        rb = result.robustness
        flagged = (f"; {rb.errors_flagged:.0%} of its errors under the low-confidence threshold"
                   if rb.errors_flagged is not None else "")
        rows.append(("robustness (moderate shifts)",
                     f"mean {rb.mean:.2%}, worst {rb.worst_kind} {rb.worst:.2%} on {rb.rows} test rows{flagged}"))
    rows.append(("ONNX parity", f"argmax {exported.parity.argmax_agreement:.2%}, max |dp| {exported.parity.max_abs_delta:.1e}"))
    if exported.int8 is not None:
        i8 = exported.int8
        rows.append(("INT8", f"{'registered' if i8.accepted else 'refused'}: {i8.reason}"))
    registered = result.registered
    rows += [("registered", f"keras v{registered.keras_version}, onnx v{registered.onnx_version}"
                            + (f", int8 v{registered.int8_version}" if registered.int8_version else "")),
             ("promotion", ("PROMOTED" if promotion.promoted else "not promoted") + f" v{promotion.version}"),
             ("champion", promotion.champion_uri)]
    if promotion.int8_champion_uri:
        rows.append(("champion, INT8", f"{promotion.int8_champion_uri} (the champion in INT8: faster on the scorer, "
                                           "within the gate's accuracy and robustness bounds)"))
    rows.append(("outputs", result.run_dir))
    return rows


def training_result(out: Console, result: TrainingResult) -> None:
    """The result table of a training run, the gate's reasons and how to open the MLflow UI."""
    from sign_model.config import tracking_uri

    promotion = result.promotion
    table = Table(title=f"MLflow run {result.run_id}", show_header=False)
    rows = result_rows(result)
    for key, value in rows:
        table.add_row(key, escape(value))
    out.print(table)
    for reason in promotion.reasons:
        out.print(f"  {escape(reason)}")
    uri = tracking_uri()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    out.print(f"\nOpen the MLflow UI:  {mlflow_cli} ui --backend-store-uri {uri}" if uri.startswith("sqlite")
              else f"\nMLflow UI: {uri}", soft_wrap=True)


def scoring_summary(out: Console, s: dict) -> None:
    """One scored file: rows in = scored + rejected, accuracy, confidence, speed, drift, outputs."""
    acc = f", accuracy {s['accuracy']:.4%}" if s["accuracy"] is not None else ""
    drift = s["drift"]
    drift_text = (f"[bold red]DRIFT[/] in {', '.join(drift['drifted'])}" if drift.get("drift")
                  else escape(drift.get("verdict", "n/a")))
    out.print(f"[bold]{escape(s['input'])}[/]: {s['rows_in']} rows in = {s['rows_scored']} scored + {s['rows_rejected']} rejected"
              f"{acc}; mean confidence {s['mean_confidence']}, {s['low_confidence_rows']} below {s['low_confidence_threshold']}; "
              f"{s['rows_per_second']:.0f} rows/s; drift: {drift_text}")
    if s["reject_reasons"]:
        out.print(escape(f"  reject reasons: {s['reject_reasons']}"))
    if s.get("renamed_columns"):
        out.print(escape(f"  pass-through columns renamed: {s['renamed_columns']}"))
    out.print(f"  model {escape(s['model']['name'])} v{s['model']['version'] or '-'} ({s['model']['sha256'][:12]})")
    out.print(escape(f"  outputs: {s['outputs']['predictions']}, {s['outputs']['rejects']}, {s['outputs']['summary']}"))
