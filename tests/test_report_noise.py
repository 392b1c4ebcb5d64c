"""Seed noise in the report: the pooled variance and the difference intervals against hand
computations, the best star only beyond seed noise, the n = 1 warning, the baselines' seed
spread, method fields per row, and the console summary the sweep driver prints."""
import math

import polars as pl
import pytest
from report_fixtures import _trial

from reports.cells import display_config_table, display_trials
from reports.console import console_summary
from reports.content import assemble_report
from reports.schema import SweepRecords, curves_frame, trials_frame
from reports.seed_noise import difference_ci, pooled_variance, seed_spread, within_noise
from reports.table_notes import table_notes
from reports.tables import config_table

T_975_DF3 = 3.182446305284  # scipy.stats.t.ppf(0.975, 3), from a t table
DELTA = "Δ vs vanilla (95% CI)"
WITHIN = "not shown (within seed noise)"


def _sweep(vanilla, beta_08, beta_06):
    """3 configurations x 2 seeds: vanilla, DTR β=0.8, DTR β=0.6 with the given FIDs."""
    rows = [_trial(f"baseline-vanilla-s{s}-v{s}", "vanilla", s, f, phase="baselines", baseline="vanilla",
                   routing="none") for s, f in enumerate(vanilla)]
    rows += [_trial(f"trial-a{s}", "DTR", s, f, beta=0.8) for s, f in enumerate(beta_08)]
    rows += [_trial(f"trial-b{s}", "DTR", s, f, beta=0.6) for s, f in enumerate(beta_06)]
    return trials_frame(rows)


def _cells(table):
    headers, rows, best = display_config_table(table)
    return [{h: c for h, c in zip(headers, r)} for r in rows], best


def test_pooled_variance_and_difference_ci_by_hand():
    # (10, 12): s^2 = 2; (7, 8): 0.5; (11, 14): 4.5; a single value adds nothing
    assert pooled_variance([[10.0, 12.0], [7.0, 8.0], [11.0, 14.0], [5.0]]) == (pytest.approx(7 / 3), 3)
    assert pooled_variance([[1.0], [2.0, None]]) == (None, 0)
    delta, half = difference_ci(7.5, 2, 11.0, 2, 7 / 3, 3)
    assert delta == -3.5 and half == pytest.approx(T_975_DF3 * math.sqrt(7 / 3) * math.sqrt(1 / 2 + 1 / 2))
    assert within_noise(delta, half) and not within_noise(-5.0, half)
    assert seed_spread([10.0, 12.0, 14.0]) == {"mean": 12.0, "sd": 2.0, "min": 10.0, "max": 14.0, "n": 3}


def test_difference_inside_the_band_is_not_shown_and_nothing_is_starred():
    table = config_table(_sweep((10.0, 12.0), (7.0, 8.0), (11.0, 14.0)), baselines=["vanilla"])
    (c,) = table.comparisons
    assert c.variance == pytest.approx(7 / 3) and c.df == 3 and c.pooled_configs == 3
    dtr = table.frame.filter(pl.col("name") == "DTR β=0.8").row(0, named=True)
    # Δ = 7.5 - 11 = -3.5, half-width t_{.975,3} * sqrt(7/3) * sqrt(1/2 + 1/2) = 4.86
    assert dtr["delta"] == -3.5 and dtr["delta_ci"] == pytest.approx(T_975_DF3 * math.sqrt(7 / 3))
    assert not dtr["delta_shown"] and not any(table.frame["best"].to_list())
    rows, best = _cells(table)
    assert best == [False, False, False]
    assert [r[DELTA].text for r in rows] == ["reference", WITHIN, WITHIN]
    assert not any("★" in r["configuration"].text or r["FID ↓"].bold for r in rows)
    notes = " ".join(table_notes(table, ["domain-fashion_mnist"]))
    assert "No configuration is marked best: the top configurations are within seed noise" in notes
    assert "Seed spread of the baselines (FID): vanilla: mean 11.00, sd 1.41, min–max 10.00–12.00, n=2." in notes


def test_difference_outside_the_band_gets_the_mark_and_the_star():
    table = config_table(_sweep((10.0, 10.4), (7.0, 7.2), (9.9, 10.5)), baselines=["vanilla"])
    (c,) = table.comparisons
    variance = (0.08 + 0.02 + 0.18) / 3  # sum (n_i - 1) s_i^2 / sum (n_i - 1)
    assert c.variance == pytest.approx(variance) and c.df == 3
    half = T_975_DF3 * math.sqrt(variance)  # sqrt(1/2 + 1/2) = 1
    assert (c.best, c.against) == ("DTR β=0.8", "vanilla (baseline)")
    assert c.delta == pytest.approx(-3.1) and c.delta_ci == pytest.approx(half)
    rows, best = _cells(table)
    assert best == [False, True, False]
    dtr = rows[1]
    assert dtr["configuration"].text == "DTR ★" and dtr["configuration"].bold and dtr["FID ↓"].bold
    assert dtr[DELTA].text == f"-3.10 ± {half:.2f} *"
    assert rows[2][DELTA].text == WITHIN  # β=0.6: Δ = 0
    assert any(n.startswith("★ DTR β=0.8: better FID than vanilla (baseline) beyond seed noise")
               for n in table_notes(table, []))


def test_a_lead_within_noise_over_the_runner_up_is_said():
    table = config_table(_sweep((10.0, 10.4), (7.0, 7.2), (7.1, 7.5)), baselines=["vanilla"])
    (c,) = table.comparisons
    assert c.best == "DTR β=0.8" and c.runner_up == "DTR β=0.6"
    assert c.runner_delta == pytest.approx(-0.2) and c.runner_ci == pytest.approx(T_975_DF3 * math.sqrt(0.06))
    assert any("lead over the runner-up DTR β=0.6" in n and "within seed noise" in n for n in table_notes(table, []))


def test_single_seeds_warn_and_mark_nothing():
    trials = _sweep((10.0,), (2.0,), (11.0,))
    table = config_table(trials, baselines=["vanilla"])
    assert table.comparisons[0].variance is None and not any(table.frame["best"].to_list())
    rows, _ = _cells(table)
    assert [r[DELTA].text for r in rows] == ["reference", "—", "—"]
    report = assemble_report(SweepRecords(sweep_dir="/tmp/x", trials=trials, curves=curves_frame([])))
    assert any("no seed repeats: differences cannot be told from seed noise" in w for w in report.warnings)
    assert not any(report.table_best)
    text, best = console_summary(trials, baselines=["vanilla"])
    assert best is None and "warning: no seed repeats" in text


def test_without_vanilla_the_best_baseline_is_the_reference():
    rows = [_trial(f"baseline-R-TR-s{s}-r{s}", "R-TR", s, f, phase="baselines", baseline="R-TR", routing="random")
            for s, f in enumerate((16.0, 16.2))]
    rows += [_trial(f"baseline-DTR-s{s}-d{s}", "DTR", s, f, phase="baselines", baseline="DTR")
             for s, f in enumerate((12.0, 12.2))]
    rows += [_trial(f"trial-c{s}", "CDTR", s, f, routing="cdtr") for s, f in enumerate((11.9, 12.3))]
    table = config_table(trials_frame(rows), baselines=["R-TR", "DTR"])
    (c,) = table.comparisons
    assert (c.reference, c.reference_label) == ("DTR (baseline)", "DTR")
    headers, _, _ = display_config_table(table)
    assert "Δ vs DTR (95% CI)" in headers and c.best is None  # CDTR 12.1 vs DTR 12.1


def _method_rows():
    def two(name, label, f, **kw):
        return [_trial(f"{name}{s}", label, s, f + 0.1 * s, **kw) for s in (0, 1)]
    return [*two("baseline-vanilla-s-v", "vanilla", 12.0, phase="baselines", baseline="vanilla", routing="none"),
            *two("baseline-R-TR-s-r", "R-TR", 16.0, phase="baselines", baseline="R-TR", routing="random"),
            *two("trial-d", "DTR", 9.0, beta=0.6, alpha=2.0),
            *two("trial-e", "DTR", 9.5, beta=0.8, alpha=4.0),
            *two("trial-m", "Min-SNR", 10.0, routing="none", weighting="min_snr", min_snr_gamma=5.0),
            *two("trial-n", "Min-SNR", 10.5, routing="none", weighting="min_snr", min_snr_gamma=3.0)]


def test_each_row_shows_only_the_fields_of_its_method():
    trials = trials_frame(_method_rows())  # every row's config has beta 0.8 / alpha 4, as RunConfig does
    table = config_table(trials, baselines=["vanilla", "R-TR"])
    assert table.varied == ["beta", "alpha", "min_snr_gamma"]
    rows, _ = _cells(table)
    fields = {(r["configuration"].text.rstrip(" ★"), r["β"].text, r["α"].text, r["γ"].text) for r in rows}
    assert fields == {("vanilla (baseline)", "—", "—", "—"), ("R-TR (baseline)", "0.8", "—", "—"),
                      ("DTR", "0.6", "2", "—"), ("DTR", "0.8", "4", "—"), ("Min-SNR", "—", "—", "5"),
                      ("Min-SNR", "—", "—", "3")}
    _, trial_rows = display_trials(trials, table.varied)
    names = {r[0].text: r[2].text for r in trial_rows}
    assert names["baseline-vanilla-s-v0"] == "vanilla" and names["baseline-R-TR-s-r0"] == "R-TR β=0.8"
    assert names["trial-m0"] == "Min-SNR γ=5" and names["trial-d0"] == "DTR β=0.6 α=2"
    text, _ = console_summary(trials, baselines=["vanilla", "R-TR"])
    vanilla_line = next(line for line in text.splitlines() if line.startswith("vanilla (baseline)"))
    assert "0.8" not in vanilla_line and " 4 " not in vanilla_line and "null" not in text


def test_console_summary_names_the_best_only_beyond_noise():
    text, best = console_summary(_sweep((10.0, 10.4), (7.0, 7.2), (9.9, 10.5)), baselines=["vanilla"])
    assert best["name"] == "DTR β=0.8" and best["fid_mean"] == pytest.approx(7.1)
    assert "best: ★ DTR β=0.8: better FID than vanilla (baseline) beyond seed noise" in text
    assert "baseline vanilla: mean 10.20, sd 0.28, min–max 10.00–10.40, n=2 (FID over seeds)" in text
    assert text.splitlines()[0].split()[:2] == ["configuration", "β"] and "paper" not in text
    text, best = console_summary(_sweep((10.0, 12.0), (7.0, 8.0), (11.0, 14.0)), baselines=["vanilla"])
    assert best is None and WITHIN in text and "best: No configuration is marked best" in text
