"""Sweep reports: pure functions from a sweep's records to tables and figures, with I/O at the edges.

    python -m reports runs/sweeps/dtr_beta-laptop          # or just: python -m reports dtr_beta-laptop
    python -m reports dtr_beta-laptop --no-mlflow          # files only: no MLflow read or upload

``build_report(sweep_dir)`` writes ``<sweep_dir>/report.html`` (self-contained: figures as
base64 PNG), ``<sweep_dir>/report.md`` (+ ``report_files/*.png`` it links to) and logs them
to the sweep's MLflow parent run when it is reachable.

Reading order:

- records (the input edge): ``records`` merges ``records_files`` (trial directories),
  ``tune_state`` (Ray Tune's view) and ``mlflow_records`` (MLflow children) into
  ``schema.SweepRecords``, and adds each trial's ``time_to_quality`` (the step and seconds at
  which its FID-k reached vanilla's final FID-k); ``bench_history`` turns the benchmark
  history into a frame;
- tables: ``methods`` (what tells configurations apart, which fields apply to a method) ->
  ``stats`` (seeds -> mean ± 95% CI) + ``seed_noise`` (pooled seed variance, difference
  intervals) -> ``comparison`` (Δ vs the reference baseline, the ★ only beyond seed noise)
  + ``cost`` (params, GFLOPs) + ``paper_values`` -> ``tables.config_table`` -> ``cells``,
  ``table_notes`` (band, best verdict, baselines' seed spread, captions, warnings);
- figures: ``figures/*`` (one module per family), listed by ``figure_list``;
- ``content.assemble_report`` (records -> ``ReportContent``), written by ``html`` / ``markdown``;
  ``console.console_summary`` (trials -> the plain-text summary the sweep driver prints);
- ``build`` (the output edge): reads, assembles, writes files, uploads to MLflow.
"""


def __getattr__(name: str):
    """``reports.build_report``, imported on first use: importing one module of the package does not
    import them all."""
    if name == "build_report":
        from reports.build import build_report
        return build_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")


__all__ = ["build_report"]
