# The two commands of the README:  make demo  and  make test.  Both start with `make setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
DEMO_DIR := outputs/demo
DEMO_STEPS ?= 6000
FIG1_SWEEP := outputs/results/fig1_fashion_mnist
FIG1_SENS_SWEEP := outputs/results/fig1_sensitivity_fashion_mnist
FIG2_SWEEP := outputs/results/fig2_fashion_mnist
FIG2_LR_SWEEP := outputs/results/fig2_lr_fashion_mnist
FIG2_SINGLE_SWEEP := outputs/results/fig2_single_fashion_mnist
FIG2_DECAY_SWEEP := outputs/results/fig2_decay_fashion_mnist
FIG4_SWEEP := outputs/results/fig4_fashion_mnist
# Protocol v2 (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml): new sweep directories, v1's data stays.
FIG2_SELECT_SWEEP := outputs/results/fig2_select_v2_fashion_mnist
FIG2_V2_SWEEP := outputs/results/fig2_v2_fashion_mnist
FIG2_V2_PAPER_K_SWEEP := outputs/results/fig2_v2_paper_k_fashion_mnist
CHOSEN := results/fig2_select_v2_fashion_mnist/chosen.yaml
PLACEMENT_MLP_SWEEP := outputs/results/placement_mlp_fashion_mnist
PLACEMENT_CONV_SWEEP := outputs/results/placement_conv_fashion_mnist
NORMS_SWEEP := outputs/results/norm_batchsize_fashion_mnist
NORMS_CONV_SWEEP := outputs/results/norm_batchsize_conv_fashion_mnist
FIG2_BF16_SWEEP := outputs/results/fig2_v2_bf16_fashion_mnist
BN_STATS_SWEEP := outputs/results/bn_statistics_fashion_mnist
BN_STATS_CONV_SWEEP := outputs/results/bn_statistics_conv_fashion_mnist
BN_SHIFT_SWEEP := outputs/results/bn_shift_fashion_mnist
# Issue 17's four studies, each on the MLP and (`_conv`) the small Inception.
WHY_STUDIES := why_noisy_bn why_ics why_landscape lr_range
WHY_SWEEPS := $(foreach e,$(WHY_STUDIES),outputs/results/$(e)_fashion_mnist outputs/results/$(e)_conv_fashion_mnist)

.PHONY: setup demo test fig1 fig1_sensitivity fig2_lr fig2 fig2_single fig2_decay fig4 fig2_select fig2_v2 fig4_v2 fig2_bf16 placement placement_mlp placement_conv norms norms_conv why why_noisy_bn why_ics \
	why_landscape lr_range why_conv why_noisy_bn_conv why_ics_conv why_landscape_conv lr_range_conv \
	why_dln why_noisy_bn_dln why_ics_dln \
	bn_statistics bn_statistics_conv bn_shift figures tensorboard report bench lock clean
SWEEPS := $(FIG1_SWEEP) $(FIG1_SENS_SWEEP) $(FIG2_LR_SWEEP) $(FIG2_SWEEP) $(FIG2_SINGLE_SWEEP) $(FIG2_DECAY_SWEEP) $(FIG4_SWEEP) $(PLACEMENT_MLP_SWEEP) $(PLACEMENT_CONV_SWEEP) \
	$(NORMS_SWEEP) $(NORMS_CONV_SWEEP) $(FIG2_BF16_SWEEP) $(WHY_SWEEPS) $(BN_STATS_SWEEP) $(BN_STATS_CONV_SWEEP) $(BN_SHIFT_SWEEP)
# A sweep's compact run data, results/<sweep>/rundata.tar.xz (scripts/pack_sweep.py): refreshed
# after each sweep, and unpacked by `make figures` where the sweep directory is missing.
PACK = $(PY) scripts/pack_sweep.py

setup: $(STAMP)

# The virtual environment, with the exact versions of constraints.txt; redone when either changes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,launchers]'
	touch $@

# Figure 1's MLP with and without BN on Fashion-MNIST, a short schedule, and its accuracy plot.
demo: setup
	bash scripts/get_fashion_mnist.sh
	rm -rf $(DEMO_DIR)
	$(PY) experiments/train.py -m experiment=fig1_mnist data=fashion_mnist data.download=true \
		variant=baseline,bn trainer.max_steps=$(DEMO_STEPS) trainer.eval_every=250 \
		hydra.sweep.dir=$(DEMO_DIR)
	$(PY) scripts/plot_fig1.py $(DEMO_DIR) --out $(DEMO_DIR)
	@echo "Demo done: runs in $(DEMO_DIR)/, test accuracy and percentiles in $(DEMO_DIR)/fig1.png;" \
		"browse with: .venv/bin/tensorboard --logdir $(DEMO_DIR)"

test: setup
	$(PY) -m pytest -q

# The sweep behind results/fig1_fashion_mnist: Figure 1 on Fashion-MNIST, 2 variants x 5 seeds x
# 50k steps. Each variant's five seeds train as one stacked model (seeds=[...], bnrepro/models/stacked.py),
# one process per core; every seed still writes its own run directory, $(FIG1_SWEEP)/<variant>/seed=<s>/.
fig1: setup
	bash scripts/get_fashion_mnist.sh
	for v in baseline bn; do \
		$(PY) experiments/train.py experiment=fig1_mnist data=fashion_mnist data.download=true \
			variant=$$v 'seeds=[0,1,2,3,4]' trainer.threads=1 hydra.run.dir=$(FIG1_SWEEP)/$$v & \
	done; wait
	$(PACK) $(FIG1_SWEEP)

# The sweep behind results/fig1_sensitivity_fashion_mnist: Figure 1's MLP with and without BN over
# initial weights (std 0.01, 0.1, 1/sqrt(fan_in)) x lr (0.01, 0.1, 0.5) x momentum (0, 0.9), 5 stacked
# seeds per cell, 50k steps (configs/experiment/fig1_sensitivity.yaml; ~77 min measured on 2 cores).
# Two processes, one per momentum, one torch thread each; every seed writes its own run directory,
# $(FIG1_SENS_SWEEP)/<cell and variant>/seed=<s>/.
fig1_sensitivity: setup
	bash scripts/get_fashion_mnist.sh
	for m in 0 0.9; do \
		$(PY) experiments/train.py -m experiment=fig1_sensitivity data=fashion_mnist data.download=true \
			variant=baseline,bn model.init_std=0.01,0.1,null optim.lr=0.01,0.1,0.5 optim.momentum=$$m \
			trainer.threads=1 hydra.sweep.dir=$(FIG1_SENS_SWEEP) & \
	done; wait
	$(PACK) $(FIG1_SENS_SWEEP) --last-layer-probes

# How fast the suite is on this machine, against a naive PyTorch loop (scripts/bench.py --help).
bench: setup
	$(PY) scripts/bench.py

# The protocol's first step (configs/experiment/fig2_fashion_mnist.yaml): the no-BN Inception's base
# rate, chosen on the validation split from 3 rates x 2 seeds (stacked) at half the budget.
fig2_lr: setup
	bash scripts/get_fashion_mnist.sh
	for lrs in 0.03 0.1,0.01; do \
		$(PY) experiments/train.py -m experiment=fig2_fashion_mnist data.download=true variant=inception \
			optim.lr=$$lrs 'seeds=[0,1]' trainer.max_steps=6000 optim.lr_decay_every=300 trainer.threads=1 \
			hydra.sweep.dir=$(FIG2_LR_SWEEP) & \
	done; wait
	$(PACK) $(FIG2_LR_SWEEP)

# The sweep behind results/fig2_fashion_mnist: Figures 2 and 3 at CPU scale, 7 variants x 3 seeds, at
# the base rate fig2_lr chose. Each variant's three seeds train as one stacked model (seeds=[0,1,2],
# bnrepro/models/stacked_conv.py), in two processes of one torch thread each, split by measured run
# time (history.md item 11): BN-Baseline, Inception-Sigmoid (two plateau-stopped budgets) and
# Inception-x5 in one, Inception and the three 2,667-step BN variants in the other, the 16,000-step budgets
# stopped at their plateau; every seed still writes its own run directory,
# $(FIG2_SWEEP)/variant=<v>/seed=<s>/ (wall time: results/fig2_fashion_mnist/fig3.md). A diverged
# or failed run is recorded and the sweep goes on.
fig2: setup
	bash scripts/get_fashion_mnist.sh
	for vs in bn_baseline,inception_sigmoid,inception_x5 inception,bn_x5,bn_x30,bn_x5_sigmoid; do \
		$(PY) experiments/train.py -m experiment=fig2_fashion_mnist data.download=true \
			variant=$$vs 'seeds=[0,1,2]' trainer.threads=1 hydra.sweep.dir=$(FIG2_SWEEP) & \
	done; wait
	$(PACK) $(FIG2_SWEEP)

# Issue 14's check of the protocol without stacking: seed 0 of Inception and of BN-x5 as single runs
# (one network each, the committed protocol), side by side; table_fig3.py reads them as a 1-seed sweep.
fig2_single: setup
	bash scripts/get_fashion_mnist.sh
	for v in inception bn_x5; do \
		$(PY) experiments/train.py experiment=fig2_fashion_mnist data.download=true variant=$$v seed=0 \
			trainer.threads=1 hydra.run.dir=$(FIG2_SINGLE_SWEEP)/$$v & \
	done; wait
	$(PACK) $(FIG2_SINGLE_SWEEP)

# The runs behind results/fig4_fashion_mnist: three more BN-x30 networks (dropout 10%, seeds 3-5, one
# stack) for Figure 4's ensemble; the other three members are make fig2's BN-x30 runs.
# An ablation beside Figure 3 (results/fig2_decay_fashion_mnist/decay.md): BN-x5 and BN-x30 with their
# rate decaying 3x faster than Inception's instead of the paper's 6x, over the schedule's 16,000 / 3
# steps, 3 seeds stacked; a process per variant, one thread each (add 2 to the list for a 2x decay,
# 8,000 steps). Read against make fig2's sweep (its threshold, and its 6x rows).
fig2_decay: setup
	bash scripts/get_fashion_mnist.sh
	for v in bn_x5 bn_x30; do \
		$(PY) experiments/train.py -m experiment=fig2_fashion_mnist data.download=true variant=$$v \
			optim.lr_decay_speedup=3 'seeds=[0,1,2]' trainer.threads=1 hydra.sweep.dir=$(FIG2_DECAY_SWEEP) & \
	done; wait
	$(PACK) $(FIG2_DECAY_SWEEP)

fig4: setup
	bash scripts/get_fashion_mnist.sh
	$(PY) experiments/train.py experiment=fig4_fashion_mnist data.download=true 'seeds=[3,4,5]' \
		trainer.threads=1 hydra.run.dir=$(FIG4_SWEEP)/bn_x30_dropout
	$(PACK) $(FIG4_SWEEP)

# Protocol v2 (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml's header: seeds, rules, estimates).
# Every job is resumable (rerun the same target: finished runs are reused, unfinished ones resume from their
# checkpoints); two processes of one torch thread each; a failed job is recorded and the others go on.
# The selection step: BN-x5 and BN-x30 at k = 2, 3, 6 on the selection seeds (100, 101), one process per
# variant; then k and Figure 4's recipe chosen on validation alone (scripts/select_fig2_k.py -> $(CHOSEN)).
fig2_select: setup
	bash scripts/get_fashion_mnist.sh
	for v in bn_x5 bn_x30; do \
		$(PY) experiments/train.py -m experiment=fig2_v2_fashion_mnist data.download=true variant=$$v \
			optim.lr_decay_speedup=2,3,6 'seeds=[100,101]' trainer.final_test=false trainer.threads=1 \
			hydra.sweep.dir=$(FIG2_SELECT_SWEEP) & \
	done; wait
	$(PACK) $(FIG2_SELECT_SWEEP)
	$(PY) scripts/select_fig2_k.py $(FIG2_SELECT_SWEEP) --out $(dir $(CHOSEN))

# The reporting sweep at the chosen k (read from $(CHOSEN); BN-x5-Sigmoid takes BN-x5's), split into two
# processes by estimated run time; the paper's k = 6 rows (seeds 0-2) go to their own sweep where 6 was not chosen.
# Then the tables: fig3 (--v2: the ladder at plateau - 0.3 / - 0.5 too) and the k = 6 rows against it.
fig2_v2: setup
	bash scripts/get_fashion_mnist.sh
	test -f $(CHOSEN) || { echo "$(CHOSEN) is missing: run make fig2_select first." >&2; exit 2; }
	k5=$$(sed -n 's/^bn_x5: //p' $(CHOSEN)); k30=$$(sed -n 's/^bn_x30: //p' $(CHOSEN)); \
	T="$(PY) experiments/train.py -m experiment=fig2_v2_fashion_mnist data.download=true trainer.threads=1"; \
	S="hydra.sweep.dir=$(FIG2_V2_SWEEP)"; P="hydra.sweep.dir=$(FIG2_V2_PAPER_K_SWEEP) 'seeds=[0,1,2]' trainer.save_predictions=true"; \
	( eval $$T variant=inception "'seeds=[0,1,2,3,4,5]'" $$S; \
	  eval $$T variant=bn_x5 optim.lr_decay_speedup=$$k5 "'seeds=[0,1,2,3,4,5]'" trainer.save_predictions=true $$S; \
	  eval $$T variant=bn_x5_sigmoid optim.lr_decay_speedup=$$k5 "'seeds=[0,1,2]'" $$S; \
	  eval $$T variant=inception_x5 "'seeds=[0,1,2]'" $$S; \
	  [ "$$k5" = 6 ] || eval $$T variant=bn_x5 optim.lr_decay_speedup=6 $$P ) & \
	( eval $$T variant=bn_baseline "'seeds=[0,1,2,3,4,5]'" trainer.save_predictions=true $$S; \
	  eval $$T variant=bn_x30 optim.lr_decay_speedup=$$k30 "'seeds=[0,1,2,3,4,5]'" trainer.save_predictions=true $$S; \
	  eval $$T variant=inception_sigmoid "'seeds=[0,1,2]'" $$S; \
	  [ "$$k30" = 6 ] || eval $$T variant=bn_x30 optim.lr_decay_speedup=6 $$P ) & \
	wait
	$(PACK) $(FIG2_V2_SWEEP)
	$(PY) scripts/table_fig3.py $(FIG2_V2_SWEEP) --v2 --out results/fig2_v2_fashion_mnist
	if [ -d $(FIG2_V2_PAPER_K_SWEEP) ]; then $(PACK) $(FIG2_V2_PAPER_K_SWEEP) && \
		$(PY) scripts/table_fig2_decay.py $(FIG2_V2_PAPER_K_SWEEP) --base $(FIG2_V2_SWEEP) \
			--out results/fig2_v2_paper_k_fashion_mnist; fi

# Issue 35 item 3: Inception and BN-x5 under fig2_v2's protocol in bf16 (configs/experiment/fig2_v2_bf16.yaml:
# the rule, committed before the sweep; ~40 min), then judged against fig2_v2's float32 runs of the same seeds.
fig2_bf16: setup
	bash scripts/get_fashion_mnist.sh
	test -f $(CHOSEN) || { echo "$(CHOSEN) is missing: run make fig2_select first." >&2; exit 2; }
	test -d $(FIG2_V2_SWEEP) || { echo "$(FIG2_V2_SWEEP) is missing: make figures unpacks it (or make fig2_v2)." >&2; exit 2; }
	k5=$$(sed -n 's/^bn_x5: //p' $(CHOSEN)); \
	T="$(PY) experiments/train.py -m experiment=fig2_v2_bf16 data.download=true trainer.threads=1 hydra.sweep.dir=$(FIG2_BF16_SWEEP)"; \
	( eval $$T variant=inception "'seeds=[0,1,2,3,4,5]'" ) & \
	( eval $$T variant=bn_x5 optim.lr_decay_speedup=$$k5 "'seeds=[0,1,2,3,4,5]'" ) & \
	wait
	$(PACK) $(FIG2_BF16_SWEEP)
	$(PY) scripts/compare_precision.py $(FIG2_BF16_SWEEP) --base $(FIG2_V2_SWEEP) --out results/fig2_v2_bf16_fashion_mnist

# Figure 4 under protocol v2: no training, the reporting runs of $(CHOSEN)'s fig4_recipe.
fig4_v2: setup
	$(PY) scripts/table_fig4_v2.py $(FIG2_V2_SWEEP) --recipe $$(sed -n 's/^fig4_recipe: //p' $(CHOSEN)) \
		--out results/fig4_v2_fashion_mnist

# The sweeps behind results/placement_*: BN before vs after the nonlinearity (and none), ReLU and
# sigmoid, for the MLP (5 seeds, one process, ~7 min) and then the small Inception (5 seeds stacked per
# job, protocol v2 of issue 32: a plateau stop per member, cap 4,000 steps; its ReLU and sigmoid halves in
# two processes, ~43 min measured): one after the other, so that no more than
# two training processes share the 2 cores.
placement: placement_mlp placement_conv

placement_mlp: setup
	bash scripts/get_fashion_mnist.sh
	$(PY) experiments/train.py -m experiment=placement_mlp data=fashion_mnist data.download=true \
		model.activation=relu,sigmoid bn.placement=none,before,after seed=0,1,2,3,4 trainer.threads=1 \
		hydra.sweep.dir=$(PLACEMENT_MLP_SWEEP)
	$(PACK) $(PLACEMENT_MLP_SWEEP)

placement_conv: setup
	bash scripts/get_fashion_mnist.sh
	for a in relu sigmoid; do \
		$(PY) experiments/train.py -m experiment=placement_conv data.download=true \
			model.activation=$$a bn.placement=none,before,after 'seeds=[0,1,2,3,4]' trainer.threads=1 \
			hydra.sweep.dir=$(PLACEMENT_CONV_SWEEP) & \
	done; wait
	$(PACK) $(PLACEMENT_CONV_SWEEP)

# The sweep behind results/norm_batchsize_fashion_mnist: batch/layer/group/no normalization at
# batch sizes 2-128, 3 seeds, in two processes of one torch thread each.
norms: setup
	bash scripts/get_fashion_mnist.sh
	for ns in batch,layer group,none; do \
		$(PY) experiments/train.py -m experiment=norm_batchsize data=fashion_mnist data.download=true \
			bn.norm=$$ns trainer.batch_size=2,8,32,128 seed=0,1,2 trainer.threads=1 \
			hydra.sweep.dir=$(NORMS_SWEEP) & \
	done; wait
	$(PACK) $(NORMS_SWEEP)

# Two training processes, each running its half of a sweep's choices in turn (choices separated by ";" within a
# half): set per target, HALF1 and HALF2, the experiment EXP, its SEEDS and its sweep directory SWEEP.
HALVES = for half in "$(HALF1)" "$(HALF2)"; do \
		( IFS=';'; for choice in $$half; do IFS=' '; \
			$(PY) experiments/train.py -m experiment=$(EXP) data=fashion_mnist data.download=true \
				$$choice seed=$(SEEDS) trainer.threads=1 hydra.sweep.dir=$(SWEEP) || exit 1; \
		done ) & \
	done; wait

# Its conv arm (issue 32; configs/experiment/norm_batchsize_conv.yaml: protocol, ~75 min estimated): batch,
# layer, group norm on the small Inception at batch sizes 2 and 32, 5 seeds, 90,000 examples a run, in two
# processes of like cost (a batch-2 run costs ~4x a batch-32 one).
norms_conv: EXP = norm_batchsize_conv
norms_conv: SEEDS = 0,1,2,3,4
norms_conv: SWEEP = $(NORMS_CONV_SWEEP)
norms_conv: HALF1 = bn.norm=batch,layer trainer.batch_size=2
norms_conv: HALF2 = bn.norm=group trainer.batch_size=2;bn.norm=batch,layer,group trainer.batch_size=32
norms_conv: setup
	bash scripts/get_fashion_mnist.sh
	$(HALVES)
	$(PACK) $(NORMS_CONV_SWEEP)

# Beyond the paper (issue 17): why BN helps, measured (configs/experiment/why_*.yaml, lr_range.yaml).
# Each sweep runs in two processes of one torch thread, one per half of its variants.
why: why_noisy_bn why_ics why_landscape lr_range
# The same four on the small conv net (configs/experiment/*_conv.yaml; protocol v2 of issue 32: 5 seeds,
# a plateau stop or a stated number of steps per study, each target ~50-90 min on 2 idle cores, estimated).
why_conv: why_noisy_bn_conv why_ics_conv why_landscape_conv lr_range_conv
SEEDS_why_noisy_bn := 0,1,2,3,4
SEEDS_why_ics := 0,1,2,3,4
SEEDS_why_landscape := 0,1,2,3,4
SEEDS_why_noisy_bn_conv := 0,1,2,3,4
SEEDS_why_ics_conv := 0,1,2,3,4
SEEDS_why_landscape_conv := 0,1,2,3,4
SEEDS_lr_range := 0,1,2
SEEDS_lr_range_conv := 0,1,2,3,4
RATES_lr_range := 0.001,0.003,0.01,0.03,0.1,0.3,1,3,10
RATES_lr_range_conv := 0.01,0.1,1,10

why_noisy_bn why_noisy_bn_conv: setup
	bash scripts/get_fashion_mnist.sh
	for v in baseline,noise bn,noisy_bn; do \
		$(PY) experiments/train.py -m experiment=$@ data=fashion_mnist data.download=true \
			variant=$$v seed=$(SEEDS_$@) trainer.threads=1 hydra.sweep.dir=outputs/results/$@_fashion_mnist & \
	done; wait
	$(PACK) outputs/results/$@_fashion_mnist

why_ics why_landscape why_ics_conv why_landscape_conv: setup
	bash scripts/get_fashion_mnist.sh
	for v in baseline bn; do \
		$(PY) experiments/train.py -m experiment=$@ data=fashion_mnist data.download=true \
			variant=$$v seed=$(SEEDS_$@) trainer.threads=1 hydra.sweep.dir=outputs/results/$@_fashion_mnist & \
	done; wait
	$(PACK) outputs/results/$@_fashion_mnist

# Issue 32: why_noisy_bn and why_ics on Santurkar et al.'s 25-layer deep linear network (synthetic data,
# no download; configs/experiment/why_*_dln.yaml: budgets, stopping rule, ~36 min estimated in all). The
# sweep directories keep the registry's <name>_fashion_mnist names although the data are synthetic.
why_dln: why_noisy_bn_dln why_ics_dln
SEEDS_why_noisy_bn_dln := 0,1,2,3,4
SEEDS_why_ics_dln := 0,1,2,3,4
VARIANTS_why_noisy_bn_dln := baseline,noise bn,noisy_bn
VARIANTS_why_ics_dln := baseline bn
why_noisy_bn_dln why_ics_dln: setup
	for v in $(VARIANTS_$@); do \
		$(PY) experiments/train.py -m experiment=$@ variant=$$v seed=$(SEEDS_$@) trainer.threads=1 \
			hydra.sweep.dir=outputs/results/$@_fashion_mnist & \
	done; wait
	$(PACK) outputs/results/$@_fashion_mnist

lr_range lr_range_conv: setup
	bash scripts/get_fashion_mnist.sh
	for v in baseline bn; do \
		$(PY) experiments/train.py -m experiment=$@ data=fashion_mnist data.download=true \
			variant=$$v optim.lr=$(RATES_$@) seed=$(SEEDS_$@) trainer.threads=1 \
			hydra.sweep.dir=outputs/results/$@_fashion_mnist & \
	done; wait
	$(PACK) outputs/results/$@_fashion_mnist

# Beyond the paper II (issue 18): BN's statistics (configs/experiment/bn_statistics.yaml, bn_shift.yaml).
# bn_statistics: 7 statistics choices x ghost batches 2-128 x 3 seeds, and group norm x 3 seeds (87
# runs), in two processes of one torch thread each, each running its half of the choices in turn.
BN_STATS_GHOST := bn.ghost_batch=2,8,32,128
bn_statistics: EXP = bn_statistics
bn_statistics: SEEDS = 0,1,2
bn_statistics: SWEEP = $(BN_STATS_SWEEP)
bn_statistics: HALF1 = bn.norm=renorm $(BN_STATS_GHOST);bn.momentum=0.01 $(BN_STATS_GHOST);bn.norm=group
bn_statistics: HALF2 = bn.momentum=0.1 $(BN_STATS_GHOST);bn.momentum=0.3 $(BN_STATS_GHOST);bn.population=average $(BN_STATS_GHOST);bn.population=precise $(BN_STATS_GHOST);bn.population=precise bn.freeze_after=0.9 $(BN_STATS_GHOST)
bn_statistics: setup
	bash scripts/get_fashion_mnist.sh
	@# Batch Renorm at ghost batch 2 is the slowest arm (~18 steps/s: its normalization is written out
	@# per ghost batch), so it has a half to itself with the two cheapest: 16.9 min on 2 idle cores
	@# (an older split, renorm with average, precise and precise + frozen, took 22.4 min).
	$(HALVES)
	$(PACK) $(BN_STATS_SWEEP)

# bn_statistics_conv: the small Inception, EMA and Batch Renorm x ghost batches 2, 8, 32 x 5 seeds, and
# group norm x 5 seeds (35 runs; protocol v2 of issue 32, ~66 min measured) in two processes, Batch Renorm (the slowest) in one; then each EMA run is
# evaluated under Algorithm 2, PreciseBN and example weighing (scripts/eval_statistics.py, no retraining).
bn_statistics_conv: EXP = bn_statistics_conv
bn_statistics_conv: SEEDS = 0,1,2,3,4
bn_statistics_conv: SWEEP = $(BN_STATS_CONV_SWEEP)
bn_statistics_conv: HALF1 = bn.norm=renorm bn.ghost_batch=2,8,32
bn_statistics_conv: HALF2 = bn.norm=batch bn.ghost_batch=2,8,32;bn.norm=group
bn_statistics_conv: setup
	bash scripts/get_fashion_mnist.sh
	$(HALVES)
	ls -d $(BN_STATS_CONV_SWEEP)/*bn.norm=batch*/ | xargs -n 1 -P 2 $(PY) scripts/eval_statistics.py
	$(PACK) $(BN_STATS_CONV_SWEEP)

# bn_shift: train 3 seeds once, then evaluate each on the corrupted test sets (scripts/eval_shift.py),
# then pack (the run data includes each run's shift.csv).
bn_shift: setup
	bash scripts/get_fashion_mnist.sh
	$(PY) experiments/train.py -m experiment=bn_shift data=fashion_mnist data.download=true seed=0,1,2 \
		trainer.threads=1 hydra.sweep.dir=$(BN_SHIFT_SWEEP)
	for run in $(BN_SHIFT_SWEEP)/*/; do [ -f $$run/config.yaml ] && $(PY) scripts/eval_shift.py $$run || exit 1; done
	$(PACK) $(BN_SHIFT_SWEEP)

# Every figure and table in results/, and the scorecard, from the sweeps above (plots read metrics, never
# train): each result's renders are declared in bnrepro/analysis/registry.py. A sweep missing from
# outputs/results/ (a fresh clone) is first unpacked from its committed copy, results/<sweep>/rundata.tar.xz,
# so the reports come out byte for byte the same. `scripts/figures.py NAME` renders one result.
figures: setup
	$(PY) scripts/figures.py

# The committed sweeps in TensorBoard (`make figures` names it): event files written from their run data
# into outputs/results/<sweep>/ (never committed), with per-variant runs, HParams and the figures.
tensorboard: setup
	$(PY) scripts/tensorboard_runs.py
	@echo "browse with: .venv/bin/tensorboard --logdir outputs/results"

# The reproduction scorecard alone: results/scorecard.csv, its section of results/README.md and the
# README's status table (bnrepro/analysis/scorecard.py; the policy: bnrepro/analysis/stats.py).
report: setup
	$(PY) scripts/figures.py --scorecard

# Re-pin constraints.txt from the current environment (after changing pyproject.toml).
lock: setup
	{ head -n 2 constraints.txt; $(PY) -m pip freeze --exclude-editable --exclude bnrepro; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) outputs
