"""Ray Tune's view of a sweep's trials: status, error, last reported result.

A *state* is ``{"phase", "status", "final", "params", "error", "last_result"}`` per Tune trial
id, read either from the newest ``<sweep_dir>/<phase>/experiment_state-*.json`` of each phase
(``tune_states``) or from the ``Result`` objects of the Tuners the driver just ran
(``result_states``).  ``apply_state`` and ``unstarted_row`` turn a state into trial-row fields.
"""
from __future__ import annotations

import glob
import json
import os

from reports.records_files import read_json
from reports.schema import CONFIG_FIELDS, METRICS, number

PHASES = ("baselines", "search")


def _last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def _error_file_line(path: str) -> str | None:
    try:
        with open(path) as f:
            return _last_line(f.read())
    except OSError:
        return None


def tune_states(sweep_dir: str) -> dict[str, dict]:
    """Trial id -> state from the newest ``experiment_state-*.json`` of each phase (empty when
    Tune left none); an errored trial's ``error`` is the last line of its ``error.txt``."""
    out: dict[str, dict] = {}
    for phase in PHASES:
        files = sorted(glob.glob(os.path.join(sweep_dir, phase, "experiment_state-*.json")), key=os.path.getmtime)
        state = read_json(files[-1]) if files else None
        for entry in (state or {}).get("trial_data", []):
            try:
                trial = json.loads(entry[0])
                runtime = json.loads(entry[1]) if len(entry) > 1 and isinstance(entry[1], str) else {}
            except (TypeError, ValueError, IndexError):
                continue
            trial_id = str(trial.get("trial_id", ""))
            if not trial_id:
                continue
            last = runtime.get("last_result") or {}
            error = None
            if trial.get("status") == "ERROR":
                logdir = os.path.join(sweep_dir, phase, trial.get("relative_logdir") or "")
                error = _error_file_line(os.path.join(logdir, "error.txt")) or "error"
            out[trial_id] = {"phase": phase, "status": trial.get("status"), "final": bool(last.get("final")),
                             "params": trial.get("config") or {}, "error": error, "last_result": last}
    return out


def result_states(grids: dict) -> dict[str, dict]:
    """Trial id -> state of the results of finished Tuners: ``grids`` maps a phase to its
    ``ray.tune.ResultGrid`` (anything iterable over objects with ``metrics``, ``error`` and
    ``config``).  A result without a trial id (a trial that failed before its first report) is
    left to the experiment-state files."""
    out: dict[str, dict] = {}
    for phase, grid in grids.items():
        for result in grid:
            last = dict(result.metrics or {})
            trial_id = str(last.get("trial_id") or "")
            if not trial_id:
                continue
            out[trial_id] = {"phase": phase, "status": "ERROR" if result.error else "TERMINATED",
                             "final": bool(last.get("final")), "params": dict(result.config or {}),
                             "error": (_last_line(str(result.error)) or "error") if result.error else None,
                             "last_result": last}
    return out


def tune_status(state: dict) -> str:
    """finished / stopped / error / running of a Tune state (a trial whose FID diverged ends
    normally for Tune, with ``diverged`` in its last result: an error here)."""
    status = state.get("status")
    if status == "ERROR" or (state.get("last_result") or {}).get("diverged"):
        return "error"
    if status == "TERMINATED":
        return "finished" if state.get("final") else "stopped"
    return "running"  # RUNNING, PENDING, PAUSED


def apply_state(row: dict, state: dict) -> None:
    """Tune's word on a trial the files know: status, error, phase, wall time; final metrics the
    files lack come from Tune's last result only when it was a final one (a stopped trial has
    none: its last FID-k is ``fid_k``, never ``fid``, whatever an older sweep reported)."""
    last = state["last_result"]
    row.update(status=tune_status(state), detail=state["error"] or (last.get("detail") if last.get("diverged")
                                                                       else None),
               phase=state["phase"], wall_s=number(last.get("time_total_s")))
    row["label"] = row.get("label") or last.get("label")
    for m in (*(METRICS if last.get("final") else ()), "fid_k", "feature_set"):
        if row.get(m) is None:
            row[m] = last.get(m)


def unstarted_row(trial_id: str, state: dict) -> dict:
    """The row of a trial Tune knows that never made a run directory (pending, or failed before
    its worker started): its status, error and the parameters Tune chose; no config exists."""
    params = state["params"]
    prefix = "baseline-" if state["phase"] == "baselines" else "trial-"
    row = {"name": prefix + trial_id, "trial": trial_id, "source": "tune", "baseline": params.get("baseline"),
           "label": params.get("baseline"), **{k: params[k] for k in CONFIG_FIELDS if k in params}}
    apply_state(row, state)
    return row
