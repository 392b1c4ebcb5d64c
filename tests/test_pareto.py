"""The Pareto front of a multi-objective sweep (reports/pareto.py): the exact front of known points
with ties and duplicates, directions per objective, the objectives read from the sweep's settings,
and the front's table and figure in the rendered report."""
import json
import os

from report_fixtures import _config, _trial, _write_trial

from reports import build_report
from reports.pareto import dominates, front_mask, objectives_of, pareto_front
from reports.schema import trials_frame

MIN_MAX = [("fid", "min"), ("images_per_s", "max")]


def _points(points, statuses=None):
    """Finished trials with (fid, images_per_s) = points; ``statuses`` sets a status per index."""
    rows = []
    for i, (fid, speed) in enumerate(points):
        row = _trial(f"trial-p{i}", "DTR", 0, fid, status=(statuses or {}).get(i, "finished"))
        row.update(fid=fid, images_per_s=speed)
        rows.append(row)
    return trials_frame(rows)


def test_dominance_follows_each_direction():
    assert dominates([1.0, 5.0], [2.0, 4.0], ["min", "max"])
    assert not dominates([1.0, 4.0], [2.0, 5.0], ["min", "max"])     # a trade-off
    assert not dominates([1.0, 5.0], [1.0, 5.0], ["min", "max"])     # identical points
    assert dominates([1.0, 5.0], [1.0, 4.0], ["min", "max"])         # tie on one, better on the other
    assert dominates([3.0, 5.0], [2.0, 5.0], ["max", "max"])
    assert front_mask([[1, 1], [1, 1], [2, 2]], ["min", "min"]) == [True, True, False]


def test_exact_front_with_ties_and_duplicates():
    points = [(10.0, 100.0),   # p0: best FID
              (12.0, 150.0),   # p1: a trade-off
              (12.0, 150.0),   # p2: duplicate of p1: both stay
              (12.0, 120.0),   # p3: ties p1 on FID, slower: dominated
              (15.0, 200.0),   # p4: fastest
              (15.0, 180.0),   # p5: dominated by p4
              (11.0, 90.0),    # p6: dominated by p0
              (20.0, 200.0),   # p7: ties p4 on speed, worse FID: dominated
              (5.0, 500.0)]    # p8: would dominate all, but it was stopped (no final values)
    trials = _points(points, {8: "stopped"})
    front = pareto_front(trials, MIN_MAX)
    assert front["name"].to_list() == ["trial-p0", "trial-p1", "trial-p2", "trial-p4"]
    # the other direction on speed turns the front around
    slow = pareto_front(trials, [("fid", "min"), ("images_per_s", "min")])
    assert slow["name"].to_list() == ["trial-p0", "trial-p6"]
    # a single objective: the front is the best value, ties included
    assert pareto_front(_points([(3.0, 1.0), (3.0, 2.0), (4.0, 9.0)]), [("fid", "min")])["name"].to_list() == [
        "trial-p0", "trial-p1"]
    assert pareto_front(trials, [("no_such_metric", "min"), ("fid", "min")]).height == 0


def test_objectives_come_from_the_sweep_settings():
    assert objectives_of({"objectives": ["fid", "images_per_s"], "modes": ["min", "max"]}) == MIN_MAX
    assert objectives_of({}) == [] and objectives_of({"objectives": ["fid"], "modes": ["sideways"]}) == []


def test_report_shows_the_front_of_a_multi_objective_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path / "runs"))
    sweep_dir = str(tmp_path / "sweeps" / "smoke-smoke")
    # (fid, images/s): a is the best FID, c the fastest, b dominated by a, d a duplicate of c
    speeds = {"trial-a": (100.0, 40.0), "trial-b": (120.0, 35.0), "trial-c": (140.0, 60.0), "trial-d": (140.0, 60.0)}
    for name, (fid, speed) in speeds.items():
        run_dir = _write_trial(sweep_dir, name, _config(name, sweep_dir, routing="dtr", beta=0.6),
                               final={"fid": fid, "label": "DTR", "feature_set": "domain-fashion_mnist"})
        path = os.path.join(run_dir, "metrics.jsonl")
        lines = [json.loads(line) for line in open(path)]
        with open(path, "w") as f:  # the table's images/s: the median of the logged throughputs
            f.writelines(json.dumps({**r, **({"images_per_s": speed} if "images_per_s" in r else {})}) + "\n"
                         for r in lines)
    with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
        json.dump({"space": "smoke", "budget": "smoke", "objectives": ["fid", "images_per_s"],
                   "modes": ["min", "max"], "trials": 4, "seed": 0}, f)
    paths = build_report(sweep_dir, log_to_mlflow=False)
    html = open(paths["html"], encoding="utf-8").read()
    assert '<h2 id="pareto-front">Pareto front</h2>' in html and "3 of 4 finished trials are on the Pareto" in html
    section = html.split('<h2 id="pareto-front">', 1)[1].split("<h2", 1)[0]
    assert all(f"<td>{n}</td>" in section or f'<td class="left">{n}</td>' in section
               for n in ("trial-a", "trial-c", "trial-d"))
    assert "trial-b" not in section
    assert os.path.exists(os.path.join(sweep_dir, "report_files", "pareto.png"))
    assert '<h2 id="pareto">Pareto front</h2>' in html
    md = open(paths["markdown"], encoding="utf-8").read()
    assert "## Pareto front" in md and "| trial-d |" in md and "| trial-b |" not in md.split("## Pareto front")[1]
    # one objective: neither the table nor the figure
    with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
        json.dump({"objectives": ["fid"], "modes": ["min"]}, f)
    html = open(build_report(sweep_dir, log_to_mlflow=False)["html"], encoding="utf-8").read()
    assert "pareto" not in html.lower()


def test_console_names_every_searched_parameter_and_the_front(tmp_path):
    """platform/sweep_summary.py: the best trial with the space's searched parameters (not beta/alpha
    by habit) and, with two objectives, the front; every parameter any space searches is a column."""
    from platform.sweep_summary import searched_lines
    from reports.methods import METHOD_FIELDS
    from reports.schema import CONFIG_FIELDS
    from search_spaces import all_spaces
    for space in all_spaces().values():
        assert set(space.params) <= set(CONFIG_FIELDS) & set(METHOD_FIELDS), space.name
    rows = [_trial("trial-c4", "CDTR", 0, 30.0, routing="cdtr", routing_clusters=4, images_per_s=50.0),
            _trial("trial-c8", "CDTR", 0, 20.0, routing="cdtr", routing_clusters=8, images_per_s=40.0),
            _trial("trial-c2", "CDTR", 0, 25.0, routing="cdtr", routing_clusters=2, images_per_s=30.0)]
    table = trials_frame(rows)
    with open(tmp_path / "sweep.json", "w") as f:
        json.dump({"objectives": ["fid", "images_per_s"], "modes": ["min", "max"]}, f)
    lines = searched_lines(table, ["routing", "routing_clusters"], str(tmp_path))
    assert lines[0] == "best trial by fid: 20, trial-c8 (CDTR) with routing=cdtr, routing_clusters=8"
    assert lines[1].startswith("Pareto front over fid (min), images_per_s (max): 2 trial(s)")
    assert [line.split(": ", 1)[1].split(" ")[0] for line in lines[2:]] == ["trial-c8", "trial-c4"]
