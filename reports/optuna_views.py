"""Optuna's views of a sweep's search phase, from the sweep's study (``<sweep_dir>/optuna_journal.log``,
the journal the sweep's searcher writes): parameter importance (fANOVA, ``optuna.importance``),
the parallel-coordinate view and the contour view (two or more searched parameters) or the slice
view (one), drawn with ``optuna.visualization.matplotlib``.  Shown when the study has at least
``MIN_COMPLETE`` COMPLETE trials; a multi-objective study is viewed on its first objective.
The same journal opens interactively in optuna-dashboard on 127.0.0.1: ``make dashboard SPACE=.. BUDGET=..``
(``python -m platform.dashboard``), or ``optuna-dashboard <sweep_dir>/optuna_journal.log``.
"""
from __future__ import annotations

import os
import warnings

JOURNAL = "optuna_journal.log"
MIN_COMPLETE = 3


def load_study(sweep_dir: str, name: str | None = None):
    """The sweep's Optuna study (``name``, or the journal's only study), or None without a journal."""
    path = os.path.join(sweep_dir, JOURNAL)
    if not os.path.exists(path):
        return None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(path))
    names = optuna.get_all_study_names(storage)
    chosen = name if name in names else (names[0] if len(names) == 1 else None)
    return optuna.load_study(study_name=chosen, storage=storage) if chosen else None


def completed(study) -> list:
    import optuna
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _target(study, objective: str | None):
    """(target function or None, its name) for a multi-objective study's first objective."""
    if len(study.directions) == 1:
        return None, objective or "objective"
    return (lambda t: t.values[0]), objective or "objective 0"


def param_importances(study, objective: str | None = None) -> dict[str, float]:
    """Parameter -> importance (fANOVA, normalised to sum 1) over the COMPLETE trials."""
    import optuna
    target, _ = _target(study, objective)
    return optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=target)


def importance_figure(importances: dict[str, float], objective: str):
    import matplotlib.pyplot as plt
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6.0, 0.5 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="#3b6ea8")
    for i, n in enumerate(names):
        ax.text(importances[n], i, f" {importances[n]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"importance for {objective} (fANOVA, sums to 1)")
    fig.tight_layout()
    return fig


def _optuna_plot(plot, study, objective: str | None, **kwargs):
    import matplotlib
    import optuna
    target, name = _target(study, objective)
    # rc_context: Optuna's plots switch matplotlib to its ggplot style, for every later figure too
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot(study, target=target, target_name=name, **kwargs)
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = first.figure
    fig.set_size_inches(max(fig.get_size_inches()[0], 6.4), max(fig.get_size_inches()[1], 4.2))
    return fig


def study_figures(sweep_dir: str, study_name: str | None, objective: str | None) -> list[dict]:
    """``[{"id", "title", "caption", "fig"}, ...]`` of the study's views (matplotlib figures), [] with
    fewer than MIN_COMPLETE COMPLETE trials or no study."""
    study = load_study(sweep_dir, study_name)
    if study is None or len(completed(study)) < MIN_COMPLETE:
        return []
    from optuna.visualization import matplotlib as views
    n, name = len(completed(study)), objective or "the objective"
    params = sorted({p for t in completed(study) for p in t.params})
    note = (f" From the sweep's Optuna study ({n} COMPLETE trials; PRUNED and FAIL trials are left out); "
            f"interactive: optuna-dashboard {os.path.join(sweep_dir, JOURNAL)}.")
    out = [{"id": "param-importance", "title": "Parameter importance",
            "caption": f"How much of the variance of {name} each searched parameter explains (fANOVA)." + note,
            "fig": importance_figure(param_importances(study, objective), name)},
           {"id": "parallel-coordinate", "title": "Parallel coordinates",
            "caption": f"Every COMPLETE trial as a line through its parameter values, coloured by {name}." + note,
            "fig": _optuna_plot(views.plot_parallel_coordinate, study, objective)}]
    if len(params) >= 2:
        out.append({"id": "contour", "title": "Contour", "caption": f"{name} interpolated over pairs of searched "
                    "parameters; dots: the trials." + note,
                    "fig": _optuna_plot(views.plot_contour, study, objective, params=params[:3])})
    else:
        out.append({"id": "slice", "title": "Slice", "caption": f"{name} against the searched parameter, one dot "
                    "per trial (darker: later)." + note, "fig": _optuna_plot(views.plot_slice, study, objective)})
    return out
