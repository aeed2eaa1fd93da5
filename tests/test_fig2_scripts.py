"""scripts/plot_fig2.py and scripts/table_fig3.py on a synthetic sweep whose answers are known exactly.

Accuracies are multiples of 1/8, so seed means are exact in floating point. Evaluations every 100
steps, on the validation split; the test split reads half an eighth lower, so a table that chose on
test would give other answers. Inception's plateau (its seed-mean curve's mean over the last quarter of
its steps, 600-800) is 4.5/8; the tests that read numbers set fig3.TOLERANCE to 0, so the reference level
is that plateau, 0.5625, first reached by the seed-mean curve at 700 (seed 0 alone at 500: the table
must use the seed-mean curve, not single seeds); the command-line tests read the default tolerance.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import plot_fig2  # noqa: E402
import table_fig3  # noqa: E402

E = 0.125
# variant -> per-seed accuracy curves at steps 100, 200, ...; statuses below
CURVES = {
    "inception": ([1, 2, 3, 4, 4, 4, 5, 6], [1, 2, 3, 3, 4, 4, 4, 4]),   # mean 5/8 first (and best) at 800
    "bn_baseline": ([2, 3, 4, 5, 6, 6, 6, 6], [2, 3, 4, 5, 5, 6, 7, 6]),  # 400: 2x; best 6.5/8 at 700
    "bn_x5": ([5, 6, 7, 7, 7, 7, 7, 7], [6, 6, 6, 7, 7, 7, 7, 7]),        # 100: 8x; best 7/8 first at 400
    "bn_x30": ([4, 6, 7, 7.5], [4, 4]),                                    # seed 1 running; mean 5/8 at 200: 4x
    "bn_x5_sigmoid": ([1, 2, 3, 4, 4, 4, 4, 5], [1, 2, 3, 4, 4, 4, 4, 4]),  # best 4.5/8: never
    "inception_x5": ([6], [6]),                                             # above the threshold, then diverged
    "inception_sigmoid": ([1] * 8, [1] * 8),                                # chance
    "zz_extra": ([2, 4], [2, 4]),                                           # unknown: listed last
}
ORDER = list(CURVES)


def write_run(run_dir: Path, variant: str, seed: int, eighths, status: str | None) -> None:
    """A run directory as bnrepro writes it; status None: still running (no summary.json)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"variant": variant, "seed": seed, "experiment": "fig2_test", "data": {"name": "synthetic8"}}))
    rows = [(100 * (i + 1), split, name, value) for i, a in enumerate(eighths)
            for split, name, value in (("train", "loss", 2.0 - a * E), ("val", "accuracy", a * E),
                                       ("test", "accuracy", (a - 0.5) * E))]
    if variant == "inception_x5":
        rows += [(150, "train", "loss", math.nan), (150, "train", "diverged", 1.0)]
    pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps({
        "command": f"train.py -m experiment=fig2_test variant={variant}", "device_name": "Test CPU",
        "device": "cpu", "cpu_count": 2, "torch": "9.9", "git_sha": "0123456789abcdef", "git_dirty": False}))
    if status:
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": status, **({"divergence": "nonfinite"} if status == "diverged" else {})}))


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    # Seed 1 of bn_x30 is still running; seed 1 of inception_x5 logged `diverged` but has no summary yet.
    unfinished = {"bn_x30": "completed", "inception_x5": "diverged"}
    for variant, seeds in CURVES.items():
        for seed, eighths in enumerate(seeds):
            status = None if seed == 1 and variant in unfinished else unfinished.get(variant, "completed")
            write_run(root / variant / f"seed={seed}", variant, seed, eighths, status)
    return root


@pytest.fixture
def exact(monkeypatch):
    """The reference level at Inception's plateau itself (no tolerance), so that crossings are exact."""
    from bnrepro.analysis import fig3

    monkeypatch.setattr(fig3, "TOLERANCE", 0.0)


def log_crossing(s0, s1, v0, v1, level):
    return math.exp(math.log(s0) + (level - v0) / (v1 - v0) * math.log(s1 / s0))


def script(name: str, *args) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fig3_table_has_the_constructed_answers(sweep, exact):
    t, ladder, _ = table_fig3.tables(sweep)
    t = t.set_index("variant")
    assert list(t.index) == ORDER
    assert (t.threshold == 4.5 * E).all() and (t.split == "val").all()
    half = log_crossing(300, 400, 4 * E, 5 * E, 4.5 * E)  # BN-Baseline's mean, halfway from 4/8 to 5/8
    assert t.steps_to_threshold.to_dict() == pytest.approx(
        {"inception": 700, "bn_baseline": half, "bn_x5": 100, "bn_x30": 100 * 2 ** 0.5, "bn_x5_sigmoid": 800,
         "inception_x5": math.nan, "inception_sigmoid": math.nan, "zz_extra": math.nan}, nan_ok=True)
    assert t.speedup.dropna().to_dict() == pytest.approx(
        {"inception": 1.0, "bn_baseline": 700 / half, "bn_x5": 7.0, "bn_x30": 700 / 100 / 2 ** 0.5,
         "bn_x5_sigmoid": 700 / 800})
    for kind in ("steps", "speedup"):  # t intervals around the point, for every variant that got there
        value = t.steps_to_threshold if kind == "steps" else t.speedup
        ok = value.notna()
        assert (t[f"{kind}_ci_low"][ok] <= value[ok] + 1e-9).all() and (value[ok] <= t[f"{kind}_ci_high"][ok] + 1e-9).all()
    # Inception's seeds are left out too: without seed 1 its plateau is 5/8, which BN-x5's mean (5.5/8 at 100)
    # still reaches at 100, as every seed of BN-x5 alone does: a point. BN-Baseline's moves with the level.
    assert (t.steps_ci_low["bn_x5"], t.steps_ci_high["bn_x5"]) == pytest.approx((100, 100))
    assert t.steps_ci_low["bn_baseline"] < half < t.steps_ci_high["bn_baseline"]
    assert t.outcome.to_dict() == {"inception": "reached", "bn_baseline": "reached", "bn_x5": "reached",
                                   "bn_x30": "reached", "bn_x5_sigmoid": "reached", "inception_x5": "diverged",
                                   "inception_sigmoid": "never", "zz_extra": "never"}
    # the plateau level: each seed's mean over its last quarter, then their mean and t interval
    assert t.plateau_val_accuracy["inception"] == pytest.approx(((4 + 5 + 6) / 3 + 4) / 2 * E)
    assert t.plateau_ci_low["inception"] < t.plateau_val_accuracy["inception"] < t.plateau_ci_high["inception"]
    assert t.best_val_accuracy.to_dict() == {"inception": 5 * E, "bn_baseline": 6.5 * E, "bn_x5": 7 * E,
                                             "bn_x30": 7.5 * E, "bn_x5_sigmoid": 4.5 * E, "inception_x5": 6 * E,
                                             "inception_sigmoid": E, "zz_extra": 4 * E}
    assert t.best_val_step.to_dict() == {"inception": 800, "bn_baseline": 700, "bn_x5": 400, "bn_x30": 400,
                                         "bn_x5_sigmoid": 800, "inception_x5": 100, "inception_sigmoid": 100,
                                         "zz_extra": 200}
    assert (t.test_at_best_val == t.best_val_accuracy - E / 2).all()  # test is read there, never chosen on
    # Plateau: Inception's seed-mean best rose from 4/8 (steps <= 600) to 5/8: not held; Inception-Sigmoid held.
    assert t.plateau_gain["inception"] == E and not t.plateau_held["inception"]
    assert t.plateau_gain["inception_sigmoid"] == 0 and t.plateau_held["inception_sigmoid"]
    assert t.loc["bn_x30", ["completed", "running"]].tolist() == [1, 1]
    assert t.loc["inception_x5", ["completed", "diverged", "running"]].tolist() == [0, 2, 0]
    assert t.running.sum() == 1 and t.failed.sum() == 0
    assert t.loc["bn_x5", ["paper_steps_to_threshold", "paper_max_accuracy", "paper_speedup"]].tolist() == \
        pytest.approx([2.1e6, 0.730, 14.8])
    assert t.paper_note.to_dict() == {**dict.fromkeys(ORDER, ""), "bn_x5_sigmoid": "never",
                                      "inception_x5": "diverged", "inception_sigmoid": "chance"}
    # The ladder: BN-x5's mean passes 0.85 between 300 (6.5/8) and 400 (7/8); Inception never gets to 0.80.
    rung = ladder.set_index(["variant", "level"])
    assert rung.loc[("bn_x5", 0.85), "steps"] == pytest.approx(log_crossing(300, 400, 6.5 * E, 7 * E, 0.85))
    assert math.isnan(rung.loc[("inception", 0.80), "steps"]) and rung.reference.sum() == 7


def test_fig3_cli_writes_a_tidy_csv_and_the_markdown(sweep, tmp_path):
    out = tmp_path / "out"
    assert "fig3.csv" in script("table_fig3.py", sweep, "--out", out)
    csv = pd.read_csv(out / "fig3.csv")
    assert list(csv.variant) == ORDER and csv.variant.is_unique
    numeric = ["threshold", "steps_to_threshold", "steps_ci_low", "speedup", "speedup_ci_high", "best_val_accuracy",
               "best_val_step", "test_at_best_val", "paper_steps_to_threshold", "paper_max_accuracy", "paper_speedup",
               "completed", "diverged", "plateau_gain"]
    assert all(pd.api.types.is_numeric_dtype(csv[c]) for c in numeric)
    inception = log_crossing(600, 700, 4 * E, 4.5 * E, 4.5 * E - 0.01)  # the default tolerance, 1 point
    assert csv.set_index("variant").speedup["bn_x5"] == pytest.approx(inception / 100)
    assert len(pd.read_csv(out / "fig3_seeds.csv")) == 16 and len(pd.read_csv(out / "fig3_ladder.csv")) == 7 * 5
    md = (out / "fig3.md").read_text()
    assert md.startswith("# Figure 3 at CPU scale: synthetic8\n")
    for line in (f"Sweep: `{sweep}`; data set: synthetic8; 16 runs (13 completed, 2 diverged, 1 running)",
                 "Reference level: 55.25%, the no-BN Inception's seed-mean **validation** plateau (56.25%: its mean "
                 "over the last 25% of its steps) minus 1.0 point",
                 "Plateau rule (Inception's seed-mean best rises by < 0.3 points over the last 25% of its steps): "
                 "**NOT held** (+12.50 points over steps 600-800).",
                 "    train.py -m experiment=fig2_test variant=bn_x5\n",
                 "Machine: Test CPU (cpu, 2 CPUs", "git 0123456789.",
                 "| BN-x5 | 2 completed | 800 | 100 [",
                 "| Inception-x5 | 2 diverged | 100 | diverged (nonfinite) | - |",
                 "| Inception-Sigmoid | 2 completed | 800 | never | never | 12.50 [12.50, 12.50]% | 12.50% (100) | 6.25% | "
                 "6.25% | +0.00 pts (held) | - | chance | - |",
                 "| model | 80.00% | 85.00% | 87.00% | 88.00% | 55.25% (reference) |"):
        assert line in md, line


def test_fig3_without_inception_says_the_threshold_is_missing(sweep, monkeypatch, capsys):
    for seed in (0, 1):
        for path in (sweep / "inception" / f"seed={seed}").iterdir():
            path.unlink()
    monkeypatch.setattr(sys, "argv", ["table_fig3.py", str(sweep)])
    table_fig3.main()  # no --out: prints the Markdown
    md = capsys.readouterr().out
    assert "**Reference level missing: no `inception` (no-BN) accuracy in this sweep" in md
    assert "| BN-x5 | 2 completed | 800 | no threshold | - | 87.50 [" in md
    assert "| Inception-x5 | 2 diverged | 100 | diverged (nonfinite) | - |" in md
    assert "| Inception |" not in md


def test_fig2_plot_legend_order_diverged_and_threshold(sweep, tmp_path, monkeypatch, exact):
    figures = []
    monkeypatch.setattr(plot_fig2, "save", lambda fig, *paths: figures.append(fig) or list(paths))
    plot_fig2.plot(sweep, tmp_path)
    (fig,) = figures
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Inception (n=2)", "BN-Baseline (n=2)", "BN-x5 (n=2)", "BN-x30 (n=2)", "BN-x5-Sigmoid (n=2)",
                      "Inception-x5 (n=2, diverged)", "Inception-Sigmoid (n=2)", "zz_extra (n=2)",
                      "reference: Inception's plateau - 0 pt (56.25%)"]
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert lines["reference: Inception's plateau - 0 pt (56.25%)"].get_linestyle() == ":"
    assert ax.get_title().startswith("Figure 2 at CPU scale")
    assert list(lines["Inception-x5 (n=2, diverged)"].get_xdata()) == [100]  # stops where it diverged
    assert list(lines["BN-x30 (n=2)"].get_xdata()) == [100, 200, 300, 400]   # the running seed as far as it got


def test_fig2_cli_writes_png_and_pdf(sweep, tmp_path):
    script("plot_fig2.py", sweep, "--out", tmp_path / "out")
    assert (tmp_path / "out" / "fig2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "fig2.pdf").read_bytes()[:5] == b"%PDF-"


def test_decay_ablation_reads_the_threshold_and_the_6x_rows_from_the_fig3_sweep(sweep, tmp_path, exact):
    """scripts/table_fig2_decay.py: BN-x30 at 3x faster decay (in its own sweep) measured against the
    Figure 3 sweep's Inception (reference 4.5/8, reached at step 700), beside that sweep's 6x BN-x5 and BN-x30."""
    import table_fig2_decay

    for run in sweep.glob("bn_x*/seed=*"):  # the paper's 6x faster decay, as configs/variant/bn_x5.yaml sets it
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "optim": {"lr_decay_speedup": 6.0}}))
    ablation = tmp_path / "decay"
    for seed, eighths in enumerate(([1, 3, 5, 6], [1, 3, 4, 5])):  # mean 4.5/8 first at 300: 700/300
        run = ablation / f"optim.lr_decay_speedup=3,variant=bn_x30/seed={seed}"
        write_run(run, "bn_x30", seed, eighths, "completed")
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "optim": {"lr_decay_speedup": 3.0}}))
    frame, seeds = table_fig2_decay.tables(ablation, sweep)
    rows = frame.set_index(["variant", "decay_speedup"])
    assert list(rows.index) == [("bn_x5", 6.0), ("bn_x30", 6.0), ("bn_x30", 3.0)]
    assert (frame.threshold == 4.5 * E).all() and (frame.inception_steps == 700).all()
    assert rows.loc[("bn_x30", 3.0), "steps_to_threshold"] == 300
    assert rows.loc[("bn_x30", 3.0), "speedup"] == pytest.approx(700 / 300)
    assert rows.loc[("bn_x30", 3.0), "sweep"] == str(ablation) and rows.loc[("bn_x5", 6.0), "sweep"] == str(sweep)
    assert rows.loc[("bn_x5", 6.0), "steps_to_threshold"] == 100  # the Figure 3 table's own answer
    assert rows.loc[("bn_x30", 3.0), "test_at_best_val"] == pytest.approx(5.5 * E - 0.5 * E)  # test, at val's best
    assert rows.loc[("bn_x30", 6.0), "steps_to_threshold"] == pytest.approx(100 * 2 ** 0.5)
    assert seeds[seeds.decay_speedup == 3].seed.tolist() == [0, 1]
    text = script("table_fig2_decay.py", ablation, "--base", sweep)  # the default tolerance: 4.5/8 - 1 point
    assert "| BN-x30 | 3x | 2 | 400 | " in text and "6x (paper)" in text


def test_fig3_says_when_inception_stopped_at_its_plateau(sweep):
    frames = table_fig3.tables(sweep)
    assert "stopped there" not in table_fig3.markdown(sweep, *frames)
    for run in sweep.glob("inception/seed=*"):  # the summaries are read by the Markdown itself
        (run / "summary.json").write_text(json.dumps({"status": "completed", "stopped": "plateau"}))
    text = table_fig3.markdown(sweep, *frames)
    assert "Inception stopped there, at the first evaluation where the rule held" in text and "So did" not in text
    for run in sweep.glob("bn_x5/seed=*"):
        (run / "summary.json").write_text(json.dumps({"status": "completed", "stopped": "plateau"}))
    assert "So did BN-x5, each where the rule first held" in table_fig3.markdown(sweep, *frames)
