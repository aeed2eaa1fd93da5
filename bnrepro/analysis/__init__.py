"""The analysis side: everything that reads what runs wrote (metrics.csv, config.yaml,
summary.json, provenance.json) and turns it into the figures, tables and reports of results/,
and the sweep table of bnrepro-summarize. It never trains, so none of it imports torch, Hydra
or OmegaConf: a plot or a report starts in a second and runs on a machine without them.
`stats` is the one statistics policy (intervals, verdicts, the diverged-run rule) and `verdicts` scores a
claim by it; `registry` names every result (its sweeps, claims and renders) and `scorecard` scores them all;
`results` reads runs back; `sweeps` adds what the placement and normalization sweeps share;
`sensitivity` computes Figure 1's sensitivity map (its cells, t intervals and verdicts);
`plots` holds the matplotlib helpers; `rundata` packs a sweep's run data into the one small file
results/ commits (and unpacks it); `summarize` tables every job of a sweep; `cli` is the one
command line of the scripts that use them (scripts/plot_*, report_*, table_fig3, summarize).
"""
