"""scripts/scorecard.py on a tiny synthetic Figure 2 sweep (the other sweeps absent): the claim ids,
verdicts that follow the policy's rule (bnrepro.analysis.stats.verdict; tests/test_stats_policy.py holds its
table), a sweep root holding none of the sweeps refused, and sections replaced in place, not duplicated."""
import math
import sys

import pandas as pd
import pytest

from bnrepro.analysis.stats import verdict
from tests.conftest import REPO
from tests.test_fig2_scripts import write_run

sys.path.insert(0, str(REPO / "scripts"))
import scorecard  # noqa: E402

FIG3_CLAIMS = ["bn_baseline_speedup", "bn_x5_speedup", "bn_x30_speedup", "bn_x30_highest", "x5_sigmoid_trains",
               "x5_sigmoid_below_inception", "inception_sigmoid_chance", "inception_x5_diverges"]
IDS = ["fig1_faster", "fig1_higher", "fig1_drift_without_bn", "fig1_stable_with_bn", "fig3_bn_baseline_speedup",
       "fig3_bn_x5_speedup", "fig3_bn_x30_speedup", "fig3_bn_x30_highest", "fig3_x5_sigmoid_trains",
       "fig3_x5_sigmoid_below_inception", "fig3_inception_sigmoid_chance", "fig3_inception_x5_diverges",
       "fig4_ensemble", *(f"fig3_v2_{c}" for c in FIG3_CLAIMS), "fig4_v2_ensemble", "placement_mlp_relu_after_beats_before", "placement_mlp_sigmoid_after_beats_before",
       "placement_conv_relu_after_beats_before", "placement_conv_sigmoid_after_beats_before",
       "norms_bn_below_ln_small_batch", "norms_conv_bn_below_ln_small_batch"]
WHY_IDS = [("why_noisy_bn", "like_bn"), ("why_noise_without_bn", "fails"), ("why_noisy_bn", "less_stable"),
           ("why_ics", "not_lower_rel_diff"), ("why_ics", "not_lower_one_minus_cos"), ("why_landscape", "loss_range"),
           ("why_landscape", "beta"), ("lr_range", "larger_rates")]
BN_STATS_IDS = ["small_batch_hurts", "precise_beats_ema_small", "gn_flat", "renorm_helps_small"]
IDS += [f"{e}_{c}" for e, c in WHY_IDS]
# the conv twins' claims carry the experiment's name (why_noise_without_bn_fails is why_noisy_bn's)
IDS += [f"{e}_conv_{c}" if e != "why_noise_without_bn" else "why_noisy_bn_conv_noise_without_bn_fails"
        for e, c in WHY_IDS]
# the deep linear network's twins (issue 32) of the two studies Santurkar et al. ran on it
IDS += ["why_noisy_bn_dln_like_bn", "why_noisy_bn_dln_noise_without_bn_fails", "why_noisy_bn_dln_less_stable",
        "why_ics_dln_not_lower_rel_diff", "why_ics_dln_not_lower_one_minus_cos"]
IDS += [f"bn_statistics_{c}" for c in [*BN_STATS_IDS, "frozen_tail_helps_small"]]
IDS += [f"bn_statistics_conv_{c}" for c in [*BN_STATS_IDS, "weighing_helps_small"]] + ["bn_shift_target_stats_help"]
# In eighths, every seed alike (so every interval is a point). Inception's plateau: the mean of its last
# quarter (steps 500, 600) 5.5/8; the reference 1 point below it, first crossed between 500 and 600.
CURVES = {"inception": [1, 2, 3, 4, 5, 6], "bn_baseline": [3, 6, 6, 6, 6, 6],   # ~3.2x, within 2x of the paper's 2.3x
          "bn_x5": [6, 7, 7, 7, 7, 7],                                             # ~5.4x, not within 2x of 14.8x
          "bn_x30": [1, 1, 1, 1, 1, 1],                                            # never: 0x
          "bn_x5_sigmoid": [1, 2, 3, 4, 5, 7],                                     # learns, above Inception
          "inception_sigmoid": [1] * 6, "inception_x5": [1]}
EXPECTED = {"fig3_bn_baseline_speedup": "reproduced", "fig3_bn_x5_speedup": "partly",
            "fig3_bn_x30_speedup": "not reproduced", "fig3_bn_x30_highest": "not reproduced",
            "fig3_x5_sigmoid_trains": "reproduced", "fig3_x5_sigmoid_below_inception": "not reproduced",
            "fig3_inception_sigmoid_chance": "reproduced",
            "fig3_inception_x5_diverges": "partly",  # 3 of 3: the exact interval [0.29, 1] reaches one half
            "fig1_faster": "not run", "fig4_ensemble": "not run", "norms_bn_below_ln_small_batch": "not run"}


@pytest.fixture
def root(tmp_path):
    for variant, eighths in CURVES.items():
        for seed in range(3):
            write_run(tmp_path / "sweeps" / "fig2_fashion_mnist" / f"{variant}_{seed}", variant, seed, eighths,
                      "diverged" if variant == "inception_x5" else "completed")
    return tmp_path / "sweeps"


def test_ids_and_verdicts(root):
    frame = scorecard.scorecard(root)
    assert frame.claim.tolist() == IDS
    got = dict(zip(frame.claim, frame.verdict))
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    row = frame.set_index("claim").loc["fig3_bn_baseline_speedup"]
    level = 5.5 / 8 - 0.01  # Inception's plateau minus the tolerance
    inception = 500 * (600 / 500) ** ((level - 5 / 8) / (1 / 8))  # log-interpolated crossings
    bn = 100 * 2 ** ((level - 3 / 8) / (3 / 8))
    assert (row.ours, row.ci_low, row.ci_high) == pytest.approx((inception / bn,) * 3)
    assert (row.seeds, row.data, row.scope) == ("3 vs 3", "synthetic8", "paper")
    for r in frame.itertuples():  # every verdict is the stated rule applied to its own row
        if r.verdict in ("reproduced", "partly", "not reproduced") and "not robust" not in r.power:
            assert r.verdict == verdict(r.ours, r.ci_low, r.ci_high, r.side, r.reference, r.paper_size,
                                        [x for x in (r.loo_low, r.loo_high) if not math.isnan(x)])


def test_a_sweep_root_without_any_sweep_is_refused(tmp_path):
    """Issue 33: an empty or missing directory must not rewrite every committed verdict as `not run`."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "README.md").write_text("kept\n")
    for root in (tmp_path / "empty", tmp_path / "missing"):
        if root.name == "empty":
            root.mkdir()
        assert scorecard.main([str(root), "--out", str(tmp_path / "results")]) == 2
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["README.md"]
    assert (tmp_path / "results" / "README.md").read_text() == "kept\n"


def test_sections_are_replaced_not_duplicated(root, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "README.md").write_text("# Results\n\nintro\n\n<!-- scorecard:start -->\nstale\n<!-- scorecard:end -->\n\n"
                                   "## Figure 1\n\nhand-written\n")
    (tmp_path / "README.md").write_text("# Top\n\n<!-- status:start -->\nold\n<!-- status:end -->\n\n## Two commands\n")
    for _ in range(2):
        assert scorecard.main([str(root), "--out", str(out)]) == 0
    page, top = (out / "README.md").read_text(), (tmp_path / "README.md").read_text()
    assert page.count("## Scorecard") == 1 and page.count("scorecard:start") == 1 and "stale" not in page
    assert page.startswith("# Results\n\nintro\n\n") and page.endswith("## Figure 1\n\nhand-written\n")
    assert "`fig3_bn_x5_speedup`" in page and "**partly**" in page
    assert top.count("status:start") == 1 and "old" not in top and top.endswith("## Two commands\n")
    assert "| Figure 4 (Sec. 4.2.3) |" in top and "`experiment=fig4_fashion_mnist` (CPU) | not run" in top
    csv = pd.read_csv(out / "scorecard.csv")
    assert csv.claim.tolist() == IDS and set(csv.verdict) <= {"reproduced", "partly", "not reproduced", "not run"}
    assert "**The paper's claims:" in page and "### Beyond the paper" in page


def test_the_run_data_line_lists_every_packed_sweep(tmp_path):
    """The scorecard's sweeps first, then any other results/<sweep>/rundata.tar.xz (fig2_decay_*, ...)."""
    for name, size in (("fig2_fashion_mnist", 2000), ("zz_other_sweep", 1000), ("fig1_fashion_mnist", 3000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rundata.tar.xz").write_bytes(b"x" * size)
    (line, _) = scorecard.sizes_line(tmp_path)
    names = [part.split("]")[0].lstrip("[") for part in line.split(": ", 1)[1].split(", ")]
    assert names == ["fig1_fashion_mnist", "fig2_fashion_mnist", "zz_other_sweep"] and "0.01 MB in all" in line


def test_the_page_opens_with_the_papers_claims_in_plain_words(root, tmp_path):
    """Issue 34 item 8: one line per paper claim, its verdict and value from the scorecard's own rows."""
    from bnrepro.analysis.claims import PLAIN, plain
    from bnrepro.analysis.scorecard import counts

    out = tmp_path / "results"
    out.mkdir()
    (out / "README.md").write_text("# Results\n\n<!-- paper:start -->\nold\n<!-- paper:end -->\n\nintro\n")
    assert scorecard.main([str(root), "--out", str(out)]) == 0
    page = (out / "README.md").read_text()
    opening = page[:page.index("<!-- paper:end -->")]
    assert page.startswith("# Results\n\n<!-- paper:start") and "old" not in opening and page.count("paper:start") == 1
    frame = scorecard.scorecard(root)
    paper = frame[frame.scope == "paper"]
    protocols = frame[frame.scope.isin(["paper", "pending", "superseded"])]
    assert all(plain(c) for c in protocols.claim) and set(PLAIN) <= set(protocols.claim)  # words for each, no more
    rows = [line for line in opening.splitlines() if line.startswith("| [")]
    assert len(rows) == len(paper)
    x30 = next(line for line in rows if PLAIN["fig3_bn_x30_speedup"][0] in line)
    assert "**not reproduced**" in x30 and "never reaches it" in x30  # the synthetic BN-x30 never gets there
    x5 = next(line for line in rows if PLAIN["fig3_bn_x5_speedup"][0] in line)
    assert "**partly** (not the paper's size)" in x5 and "times faster" in x5
    assert f"**{counts(paper)}.**" in opening
    assert "0 [" not in x30


def test_a_later_protocol_replaces_the_earlier_one_once_its_runs_are_all_finished(root, tmp_path):
    """Protocol v2 (issue 31) reads the same claims on its own sweep: while one of its runs is unfinished its
    rows read `not run` and stay out of the counts (pending); once all finish they replace v1's (superseded),
    one protocol per claim, so the paper's count stays 13. Figure 4 v2 has no runs: v1's Figure 4 row stays."""
    v2 = root / "fig2_v2_fashion_mnist"
    for variant, eighths in CURVES.items():
        for seed in range(3):
            last = variant == "bn_x30" and seed == 2
            write_run(v2 / f"{variant}_{seed}", variant, seed, eighths,
                      None if last else "diverged" if variant == "inception_x5" else "completed")
    frame = scorecard.scorecard(root).set_index("claim")
    v2_rows = frame.loc[[f"fig3_v2_{c}" for c in FIG3_CLAIMS]]
    assert v2_rows.verdict.str.startswith("not run (1 of 21 runs unfinished").all()
    assert v2_rows.ours.isna().all() and (v2_rows.seeds == "").all()  # no half-run number shown as ours
    assert set(v2_rows.scope) == {"pending"} and (frame.scope == "paper").sum() == 13
    assert frame.loc["fig3_bn_x5_speedup", "scope"] == "paper"

    (v2 / "bn_x30_2" / "summary.json").write_text('{"status": "completed"}')
    frame = scorecard.scorecard(root).set_index("claim")
    for c in FIG3_CLAIMS:  # the same runs give the same verdicts; the v1 rows step aside
        assert frame.loc[f"fig3_v2_{c}", "verdict"] == frame.loc[f"fig3_{c}", "verdict"]
        assert (frame.loc[f"fig3_v2_{c}", "scope"], frame.loc[f"fig3_{c}", "scope"]) == ("paper", "superseded")
    assert (frame.loc["fig4_ensemble", "scope"], frame.loc["fig4_v2_ensemble", "scope"]) == ("paper", "pending")
    assert (frame.scope == "paper").sum() == 13
    out = tmp_path / "results"
    out.mkdir()
    (tmp_path / "README.md").write_text("# Top\n\n<!-- status:start -->\n<!-- status:end -->\n")
    assert scorecard.main([str(root), "--out", str(out)]) == 0
    page, top = (out / "README.md").read_text(), (tmp_path / "README.md").read_text()
    assert "### Other protocols of the same figures (kept, not counted)" in page
    assert "| Figures 2, 3 (Sec. 4.2) |" in top and "superseded by Figures 2-4, protocol v2" in top


def test_each_row_names_the_budget_its_runs_trained_for_and_by_which_rule(tmp_path):
    """results.budget: the steps, and whether a run stopped at its plateau or at the cap (not at a plateau)."""
    import json

    from bnrepro.analysis.results import budget

    def run(name, status, steps, stopped=None, rule=False):
        d = tmp_path / "sweep" / name
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text("step,split,name,value\n1,train,loss,2.3\n")
        (d / "summary.json").write_text(json.dumps({"status": status, "steps": steps, "stopped": stopped}))
        (d / "config.yaml").write_text(f"trainer:\n  stop_at_plateau: {str(rule).lower()}\n")

    assert budget(tmp_path / "sweep") == ""
    run("a", "completed", 2400)
    run("b", "completed", 2400)
    assert budget(tmp_path / "sweep") == "2,400 steps (a fixed budget)"
    run("c", "completed", 1200, "plateau", rule=True)
    run("d", "completed", 2400, None, rule=True)
    run("e", "diverged", 40, None, rule=True)
    assert budget(tmp_path / "sweep") == ("1,200-2,400 steps, 1 of 2 stopped at their plateau (1 at the cap, not at "
                                          "a plateau), 2 on a fixed budget, 1 diverged")


def test_a_fixed_budget_row_says_whether_its_arms_had_plateaued():
    """fig3.plateau_note on each arm's seed-mean validation curve, appended to the row's budget (issue 32)."""
    import numpy as np

    from bnrepro.analysis.fig3 import plateau_note
    from bnrepro.analysis.verdicts import score

    steps = [100, 200, 300, 400]
    curves = {"flat": [0.5, 0.8, 0.801, 0.802], "rising": [0.5, 0.7, 0.75, 0.8]}
    metrics = pd.DataFrame([{"run": f"{arm}{seed}", "variant": "x", "status": "completed", "split": "val",
                             "name": "accuracy", "step": s, "value": v + 0.001 * seed}
                            for arm, c in curves.items() for seed in range(2) for s, v in zip(steps, c)])
    note = plateau_note(metrics, {arm: metrics.run.str.startswith(arm) for arm in ("flat", "rising", "absent")})
    assert note == "plateau rule on val, last 25%: flat +0.10 points (held), rising +5.00 (not held)"
    assert plateau_note(metrics.assign(split="test"), {"flat": metrics.run.str.startswith("flat")}).startswith(
        "plateau rule on test")
    spec = {"claim": "c", "text": "", "paper": "", "statistic": "", "side": ">", "reference": 0.0,
            "groups": [np.array([1.0, 2.0, 3.0])], "stat": lambda g: float(g[0].mean())}
    assert score({**spec, "budget": "400 steps (a fixed budget)", "plateau": note})["budget"] == (
        f"400 steps (a fixed budget); {note}")
    assert score(spec)["budget"] == ""
