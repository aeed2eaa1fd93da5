"""The paper's reported numbers, in one place, for reports to print beside ours."""
from __future__ import annotations

# Every anchor string below carries its source's place (Sec., Fig., Table, App., p.) or the word
# "uncited" where issue 32's look-up found no copy of the number (tests/test_paper_anchors.py checks).
# "uncited" marks the number, not the qualitative claim beside it, whose place is still given.

# Figure 3 (Sec. 4.2.2), by variant: display name, steps to reach Inception's best single-crop
# accuracy of 72.2%, maximum accuracy, speed-up over Inception; in the paper's order, then the
# two controls the text reports.
FIG3 = {
    "inception": ("Inception", "31.0e6", "72.2%", "1x"),
    "bn_baseline": ("BN-Baseline", "13.3e6", "72.7%", "2.3x"),
    "bn_x5": ("BN-x5", "2.1e6", "73.0%", "14.8x"),
    "bn_x30": ("BN-x30", "2.7e6", "74.8%", "11.5x"),
    "bn_x5_sigmoid": ("BN-x5-Sigmoid", "never", "69.8%", "-"),
    "inception_x5": ("Inception-x5", "diverged", "-", "-"),
    "inception_sigmoid": ("Inception-Sigmoid", "-", "chance", "-"),
}


FIG3_SOURCE = ("Ioffe & Szegedy 2015, Sec. 4.2.2, Fig. 3 (the table of steps to 72.2% and maximum accuracy; "
               "the text gives Inception's 72.2% after 31.0e6 steps and the two controls)")


def fig3_name(variant: str) -> str:
    return FIG3.get(variant, (variant,))[0]


def fig3_order(variants) -> list[str]:
    """The paper's variants in its order, then any others alphabetically."""
    present = set(variants)
    known = [v for v in FIG3 if v in present]
    return known + sorted(present - set(known))

# Not the paper: what others reported on BN's placement, cited by the seeds (000, 001) and issue 7,
# for reports to print beside ours. (source, setting, before, after, runs), accuracies in %,
# "before" = z = g(BN(Wu)) (the paper's), "after" = z = BN(g(Wu)). Issue 32 looked each one up:
# the CaffeNet numbers are in the benchmark's batchnorm.md (without its scale&bias layer; with it
# 47.8 vs 49.3); the MLP study's source was not found anywhere we could search, so it says "uncited".
PLACEMENT_ANCHORS = (
    ("CaffeNet benchmark (ducha-aiki/caffenet-benchmark, batchnorm.md, Table 'BN -- before or after ReLU?')",
     "CaffeNet, ImageNet at 128 px, ReLU, top-1", "47.4", "49.9", "1 run"),
    ("a CIFAR-10 MLP study (uncited: no source found)", "MLP, CIFAR-10, ReLU (Linear-BN-ReLU vs Linear-ReLU-BN)",
     "58.18 ± 0.23", "57.14 ± 0.28", "10 runs"),
)

# Figure 1 (Sec. 4.1): what the paper states, in words (it prints no numbers for MNIST).
FIG1 = {
    "faster": "BN's test accuracy rises faster (Fig. 1a)",
    "higher": "BN's test accuracy ends higher (Fig. 1a)",
    "drift": "without BN the last-layer sigmoid input changes significantly in mean and variance (Fig. 1b)",
    "stable": "with BN that input's distribution stays stable (Fig. 1c)",
}

# Figure 4 (Sec. 4.2.3): the ensemble of six BN-x30-based networks, 144 crops, on ImageNet.
FIG4_ENSEMBLE = "4.9% top-5 validation error (4.82% test); single BN-Inception 144 crops 5.82% (Sec. 4.2.3, Fig. 4)"

# Not the paper: the later work issue 17 tests it against (configs/experiment/why_*.yaml, lr_range.yaml).
# Issue 32's look-up (its report lists the copies read): the places are the papers' own; the numbers
# marked "uncited" were seen only in secondary summaries of the papers, not on a page of the paper.
SANTURKAR = "Santurkar et al. 2018"  # "How Does Batch Normalization Help Optimization?", arXiv 1805.11604
BJORCK = "Bjorck et al. 2018"  # "Understanding Batch Normalization", arXiv 1806.02375
WHY_ANCHORS = {
    "noisy_like_bn": f"{SANTURKAR}, Sec. 2.1, Fig. 2 (VGG, CIFAR-10): noisy BN trains almost like BN, both above no BN "
                     "(the accuracies BN 83% vs 80% without: uncited, seen only in a secondary summary of App. A)",
    "noise_fails": f"{SANTURKAR}, Sec. 2.1 (Fig. 2's discussion): the same noise without BN prevents training "
                   "(the sentence's page: uncited, seen only in a secondary summary)",
    "noisy_less_stable": f"{SANTURKAR}, Sec. 2.1, Fig. 2: noisy BN's layer inputs are less stable than without BN",
    "ics_not_lower": f"{SANTURKAR}, Sec. 2.2, Def. 2.1, Fig. 3 (VGG on CIFAR-10; a 25-layer deep linear network on "
                     "synthetic Gaussian data): ICS with BN similar to or higher than without",
    "smoother": f"{SANTURKAR}, Sec. 3.1, Fig. 4 (VGG): loss and gradient vary less along the gradient with BN, early "
                "in training (the size, ~2 orders of magnitude for gradient predictiveness: uncited, seen only in a "
                "secondary summary)",
    "larger_rates": f"{BJORCK}, Fig. 1 (ResNet-110, CIFAR-10, test accuracy at several rates): with BN the network trains "
                    "at lr 0.1, without BN only at small rates (~1e-4); the accuracy ~93%: uncited",
    "rel_loss": f"{BJORCK}, the divergence section's relative-loss figure (L(x - a g)/L(x) against the step, early "
                "in training): without BN it passes their divergence threshold 1e3 past a step of ~1e-3, with BN it "
                "does not (figure number and the earlier '1e6': uncited)",
}

# Not the paper: the later work issue 18 tests it against (configs/experiment/bn_statistics.yaml,
# bn_shift.yaml). All ResNet-50 on ImageNet (Inception-v3 for Batch Renorm); our networks on
# Fashion-MNIST, so the sizes will differ. Issue 32's look-up: Wu & He's abstract (p. 1) gives
# 10.6 points at batch 2 (= 34.7 - 24.1, Table 2's); the other numbers below were not found in
# a copy we could read and say "uncited", their places are the papers' sections.
WU_JOHNSON = "Wu & Johnson 2021"  # "Rethinking 'Batch' in BatchNorm", arXiv 2105.07576
WU_HE = "Wu & He 2018"  # "Group Normalization", arXiv 1803.08494
IOFFE_2017 = "Ioffe 2017"  # "Batch Renormalization", arXiv 1702.03275
SUMMERS = "Summers & Dinneen 2020"  # "Four Things Everyone Should Know to Improve Batch Normalization", arXiv 1906.03548
BN_STATS_ANCHORS = {
    "small_batch_hurts": f"{WU_HE}, Table 2 and Fig. 1: BN's top-1 error 23.6% at 32 images per GPU, 27.3% at 4, "
                         "34.7% at 2 (abstract, p. 1: 10.6 points above GN at 2)",
    "precise_beats_ema": f"{WU_JOHNSON}, Sec. 3 (population statistics; normalization batch in Sec. 4): PreciseBN beats "
                         "the EMA at small normalization batches (35.5% vs 32.0% error at 2, 23.7 vs 23.5 at 32: "
                         "uncited)",
    "gn_flat": f"{WU_HE}, Table 2 and Fig. 1: at 2 images per GPU BN 34.7% vs GN 24.1% error, GN 24.0-24.2 at 2-32 "
               "(abstract, p. 1: GN 10.6 points lower at 2)",
    "renorm_helps": f"{IOFFE_2017}, Sec. 4 (results, small minibatches; Inception-v3, microbatches of 4): Batch Renorm "
                    "trains above BN (74.2% vs 76.5% accuracy: uncited)",
    "frozen_tail_helps": f"{WU_JOHNSON}, Sec. 4.2: a FrozenBN tail (population statistics in training) helps "
                         "small normalization batches",
    "weighing_helps": f"{SUMMERS}, Sec. 3 (inference example weighing; subsection number not checked) and abstract: weighing each example's own statistics into inference "
                      "normalization fixes a train-test discrepancy, gains across batch sizes",
    "target_stats_help": f"{WU_JOHNSON}, Sec. 5 (domain shift, ImageNet-C): statistics recomputed on the target lower "
                         "the error (contrast 40.8 -> 33.1%, gaussian noise 64.4 -> 52.5%: uncited)",
}
