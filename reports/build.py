"""The report's edges: read a sweep's records (files, MLflow) and the benchmark history, write
``report.html``, ``report.md`` and ``report_files/*.png`` into the sweep directory, and log them
to the sweep's MLflow parent run.  Everything between is ``content.assemble_report``."""
from __future__ import annotations

import os

from reports.bench_history import history_rows
from reports.content import assemble_report
from reports.html import render_html
from reports.markdown import render_markdown
from reports.mlflow_records import log_report_to_mlflow
from reports.records import load_sweep
from reports.records_files import read_artifacts
from trainers.files import atomic_path, read_jsonl
from trainers.paths import bench_history_path, mlflow_tracking_uri

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
FIGURE_DIR = "report_files"


def read_bench_history(path: str | None = None):
    """The full-scale speed-benchmark history (``history_rows``), or None when the bench has
    never run here or its history cannot be read (that only hides the trend figure)."""
    try:
        history = history_rows(read_jsonl(path or bench_history_path(), skip_bad=True), scale="full")
    except Exception:
        return None
    return history if history.height else None


def _write(path: str, data: bytes | str) -> str:
    """``data`` into ``path`` atomically (text as UTF-8: the report has β, ±, ★ whatever the locale)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _write_figures(sweep_dir: str, figures: list[dict]) -> tuple[dict[str, str], list[str]]:
    """Each figure's PNG as ``report_files/<id>.png``; (id -> path relative to the sweep dir, paths)."""
    relative, written = {}, []
    for fig in figures:
        if not fig.get("png"):
            continue
        path = os.path.join(sweep_dir, FIGURE_DIR, f"{fig['id']}.png")
        _write(path, fig["png"])
        relative[fig["id"]] = f"{FIGURE_DIR}/{fig['id']}.png"
        written.append(path)
    return relative, written


def build_report(sweep_dir: str, *, log_to_mlflow: bool = True, use_mlflow: bool | None = None,
                 tracking_uri: str | None = None) -> dict:
    """Write ``report.html``, ``report.md`` and ``report_files/`` into ``sweep_dir``; log them to the
    sweep's MLflow parent run when ``log_to_mlflow`` (and reachable).  ``use_mlflow`` (default:
    ``log_to_mlflow``) also reads trial records from MLflow.  Returns
    ``{"html", "markdown", "figures": [...], "mlflow_logged": bool}``."""
    sweep_dir = os.path.abspath(sweep_dir)
    if not os.path.isdir(sweep_dir):
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    use_mlflow = log_to_mlflow if use_mlflow is None else use_mlflow
    uri = tracking_uri or (mlflow_tracking_uri() if use_mlflow or log_to_mlflow else None)
    records = load_sweep(sweep_dir, use_mlflow=use_mlflow, tracking_uri=uri)
    report = assemble_report(records, artifacts=read_artifacts(records.trials), bench_history=read_bench_history(),
                             tracking_uri=uri)
    os.makedirs(os.path.join(sweep_dir, FIGURE_DIR), exist_ok=True)  # logged to MLflow even when empty
    figure_paths, written = _write_figures(sweep_dir, report.figures)
    html_path = _write(os.path.join(sweep_dir, REPORT_HTML), render_html(report))
    md_path = _write(os.path.join(sweep_dir, REPORT_MD), render_markdown(report, figure_paths))
    logged = (log_report_to_mlflow(sweep_dir, [html_path, md_path, os.path.join(sweep_dir, FIGURE_DIR)], uri)
              if log_to_mlflow else False)
    return {"html": html_path, "markdown": md_path, "figures": written, "mlflow_logged": logged}
