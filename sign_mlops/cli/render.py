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

from sign_mlops.contract.summary import ScoreSummary
from sign_mlops.sign_model.results import TrainingResult, result_rows


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


def training_result(out: Console, result: TrainingResult) -> None:
    """The result table of a training run, the gate's reasons and how to open the MLflow UI."""
    from sign_mlops.contract.paths import tracking_uri

    promotion = result.promotion
    table = Table(title=f"MLflow run {result.run_id}", show_header=False)
    rows = result_rows(result)
    assert promotion is not None  # result_rows raised for a run that did not finish
    for key, value in rows:
        table.add_row(key, escape(value))
    out.print(table)
    for reason in promotion.reasons:
        out.print(f"  {escape(reason)}")
    uri = tracking_uri()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    out.print(f"\nOpen the MLflow UI:  {mlflow_cli} ui --backend-store-uri {uri}" if uri.startswith("sqlite")
              else f"\nMLflow UI: {uri}", soft_wrap=True)


def scoring_summary(out: Console, s: ScoreSummary) -> None:
    """One scored file: rows in = scored + rejected, accuracy, confidence, speed, drift, outputs."""
    acc = f", accuracy {s.accuracy:.4%}" if s.accuracy is not None else ""
    drift = s.drift
    drift_text = (f"[bold red]DRIFT[/] in {', '.join(drift['drifted'])}" if drift.get("drift")
                  else escape(drift.get("verdict", "n/a")))
    out.print(f"[bold]{escape(s.input)}[/]: {s.rows_in} rows in = {s.rows_scored} scored + {s.rows_rejected} rejected"
              f"{acc}; mean confidence {s.mean_confidence}, {s.low_confidence_rows} below {s.low_confidence_threshold}; "
              f"{s.rows_per_second:.0f} rows/s; drift: {drift_text}")
    if s.reject_reasons:
        out.print(escape(f"  reject reasons: {s.reject_reasons}"))
    if s.renamed_columns:
        out.print(escape(f"  pass-through columns renamed: {s.renamed_columns}"))
    out.print(f"  model {escape(s.model['name'])} v{s.model['version'] or '-'} ({s.model['sha256'][:12]})")
    out.print(escape(f"  outputs: {s.outputs['predictions']}, {s.outputs['rejects']}, {s.outputs['summary']}"))
