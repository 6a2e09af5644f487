"""How results look on the console (rich); `cli.py` only declares commands and calls these.

Everything that comes from data or the user (file names, reasons) is escaped, so a name like
`b[1].csv` prints as written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sign_mlops.contract.summary import ScoreSummary
from sign_mlops.sign_model.results import Promotion, TrainingResult, result_rows

if TYPE_CHECKING:  # registry imports MLflow; the CLI must start without it (scoring-only install)
    from sign_mlops.flows.sweep import SweepResult
    from sign_mlops.sign_model.compare import Comparison
    from sign_mlops.sign_model.registry import VersionRow


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


def promotion(out: Console, model: str, result: Promotion) -> None:
    """A gate decision or a pin: the verdict and every reason."""
    verdict = "PROMOTED to champion" if result.promoted else "NOT promoted"
    out.print(f"{escape(model)} v{result.version}: {verdict}")
    for reason in result.reasons:
        out.print(f"  - {escape(reason)}")


def _share(value: float | None) -> str:
    return f"{value:.2%}" if value is not None else "-"


def versions_table(out: Console, rows: "list[VersionRow]", store: str) -> None:
    """`sign-mlops models`: one row per version, newest first, then why each decision went its way
    (only the failed checks of a refusal; the reason given for a pin or a forced promotion)."""
    table = Table(title=escape(f"{rows[0].model} in {store}" if rows else store))
    for column, justify in (("ver.", "right"), ("aliases", "left"), ("created (UTC)", "left"),
                            ("test acc.", "right"), ("robust mean", "right"), ("worst kind", "left"),
                            ("INT8", "left"), ("decision", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        worst = f"{_share(row.robust_worst)} {row.robust_worst_kind}".strip() if row.robust_worst is not None else "-"
        table.add_row(row.version, ", ".join(row.aliases) or "-", row.created.replace("T", " ")[:16],
                      _share(row.test_accuracy), _share(row.robust_mean), escape(worst),
                      f"v{row.int8_version}" if row.int8_version else "-",
                      escape(f"{row.decision} {row.decided_at.replace('T', ' ')[:16]}".strip() or "not judged"))
    out.print(table)
    for row in rows:
        if row.decision:
            out.print(escape(f"v{row.version} {row.decision}: {_deciding_reasons(row.reasons)}"), soft_wrap=True)


def _deciding_reasons(reasons: str, limit: int = 400) -> str:
    """The reasons that decided: a refusal's failed checks, else the first reason (a pin's or a
    forced promotion's why, or "all checks passed")."""
    parts = [part.strip() for part in reasons.split(" | ") if part.strip()]
    failed = [part for part in parts if part.startswith(("FORCED", "FAIL"))]
    if failed:
        text = "; ".join(sorted(failed, key=lambda part: not part.startswith("FORCED")))
    elif parts and not parts[0].startswith("PASS"):
        text = parts[0]
    else:
        text = "all checks passed"
    return text[:limit] + "..." if len(text) > limit else text


def comparison(out: Console, c: "Comparison", outputs: list[Path]) -> None:
    """`sign-mlops compare`: the two models side by side, then the letters where they differ most."""
    table = Table(title=escape(f"{Path(c.data).name}: {c.rows:,} labelled rows ({c.rejected} rejected, not compared)"))
    table.add_column("")
    for result in (c.a, c.b):
        table.add_column(escape(result.title), justify="right")
    for label, values in (
        ("accuracy", (_share(c.a.accuracy), _share(c.b.accuracy))),
        ("robustness mean (file's rows, shifted)", (_share(c.a.robust_mean), _share(c.b.robust_mean))),
        ("worst kind", tuple(f"{_share(r.robust_worst)} {r.robust_worst_kind}" for r in (c.a, c.b))),
        ("scorer rows/s (median of pairs)", tuple(f"{r.rows_per_second:,.0f}" for r in (c.a, c.b))),
        ("right where the other is wrong", (f"{c.only_a_right:,}", f"{c.only_b_right:,}")),
    ):
        table.add_row(label, *(escape(v) for v in values))
    out.print(table)
    out.print(f"agreement (same letter predicted): {c.agreement:.2%}; both right {c.both_right:,}, "
              f"both wrong {c.both_wrong:,}")
    gaps = sorted(((c.b.per_class.get(letter, 0.0) - acc, letter) for letter, acc in c.a.per_class.items()),
                  key=lambda gap: -abs(gap[0]))
    shown = [f"{letter} {_share(c.a.per_class[letter])} -> {_share(c.b.per_class.get(letter))}"
             for gap, letter in gaps[:5] if abs(gap) > 0]
    out.print("letters that differ most (A -> B): " + ("; ".join(shown) if shown else "none, every letter the same"))
    for path in outputs:
        out.print(f"  {escape(str(path))}")


def sweep_result(out: Console, r: "SweepResult") -> None:
    """`sign-mlops sweep`: the ranked configurations, best first, and where everything is."""
    table = Table(title=escape(f"sweep {r.parent_run_id}: {r.trials} trials ({r.trained} trained now, "
                               f"{r.failed} failed), best first"))
    columns = [("rank", "rank"), ("configuration", "configuration"), ("seeds", "seeds"),
               ("val acc.", "val_accuracy mean"), ("test acc.", "test_accuracy mean"), ("robust mean", "robust_mean mean"),
               ("worst kind", "robust_worst mean"), ("M MACs", "mmacs mean"), ("rows/s", "rows_per_s mean"),
               ("train s", "train_seconds mean")]
    for title, _ in columns:
        table.add_column(title, justify="left" if title == "configuration" else "right", overflow="fold")
    for row in r.ranked:
        cells = []
        for _, key in columns:
            value = row.get(key)
            if key in ("val_accuracy mean", "test_accuracy mean", "robust_mean mean", "robust_worst mean"):
                cells.append(_share(value))
            elif isinstance(value, float):
                cells.append(f"{value:.2f}" if key == "mmacs mean" else f"{value:,.0f}")
            else:
                cells.append(escape(str(value if value is not None else "-")) + (f" ({row['failed']} failed)"
                                                                                 if key == "seeds" and row.get("failed") else ""))
        table.add_row(*cells)
    out.print(table)
    out.print(f"ranked table: {escape(r.table_path)}\nPareto plot:  {escape(r.plot_path)}")
    if r.best_run_id:
        out.print(f"best trial: run {r.best_run_id}; to send it through the gate: sign-mlops register --from "
                  f"{escape(r.best_run_dir)}")
    if r.promotion is not None:
        out.print(("PROMOTED" if r.promotion.promoted else "not promoted") + f" v{r.promotion.version}")
        for reason in r.promotion.reasons:
            out.print(f"  {escape(reason)}")
