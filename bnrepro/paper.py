"""The paper's reported numbers, in one place, for reports to print beside ours."""
from __future__ import annotations

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


def fig3_name(variant: str) -> str:
    return FIG3.get(variant, (variant,))[0]


def fig3_order(variants) -> list[str]:
    """The paper's variants in its order, then any others alphabetically."""
    present = set(variants)
    known = [v for v in FIG3 if v in present]
    return known + sorted(present - set(known))

# Not the paper: what others reported on BN's placement, cited by the seeds (000, 001) and issue 7,
# for reports to print beside ours. (source, setting, before, after, runs), accuracies in %,
# "before" = z = g(BN(Wu)) (the paper's), "after" = z = BN(g(Wu)).
PLACEMENT_ANCHORS = (
    ("CaffeNet benchmark (seed 001 refs [8, 9])", "CaffeNet, ImageNet at 128 px, ReLU, top-1", "47.4", "49.9", "1 run"),
    ("a CIFAR-10 MLP study", "MLP, CIFAR-10, ReLU (Linear-BN-ReLU vs Linear-ReLU-BN)", "58.18 ± 0.23", "57.14 ± 0.28",
     "10 runs"),
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
SANTURKAR = "Santurkar et al. 2018"  # "How Does Batch Normalization Help Optimization?"
BJORCK = "Bjorck et al. 2018"  # "Understanding Batch Normalization"
WHY_ANCHORS = {
    "noisy_like_bn": f"{SANTURKAR}, Fig. 2 (VGG, CIFAR-10): noisy BN trains almost like BN (BN 83% vs 80% without)",
    "noise_fails": f"{SANTURKAR}, Sec. 2.1: the same noise without BN prevents training",
    "noisy_less_stable": f"{SANTURKAR}, Fig. 2: noisy BN's layer inputs are less stable than without BN",
    "ics_not_lower": f"{SANTURKAR}, Fig. 3 (DLN, VGG): ICS with BN equal to or higher than without",
    "smoother": f"{SANTURKAR}, Fig. 4 (VGG): loss and gradient vary ~2 orders of magnitude less with BN, early",
    "larger_rates": f"{BJORCK}, ResNet-110 CIFAR-10: BN trains at lr 0.1 (~93%), without BN it diverges there",
    "rel_loss": f"{BJORCK}: at initialization the no-BN relative loss exceeds 1e6 past a step of ~1e-3; BN's stays ~1",
}

# Not the paper: the later work issue 18 tests it against (configs/experiment/bn_statistics.yaml,
# bn_shift.yaml). All ResNet-50 on ImageNet; our MLP on Fashion-MNIST, so the sizes will differ.
WU_JOHNSON = "Wu & Johnson 2021"  # "Rethinking 'Batch' in BatchNorm"
WU_HE = "Wu & He 2018"  # "Group Normalization"
IOFFE_2017 = "Ioffe 2017"  # "Batch Renormalization"
SUMMERS = "Summers & Dinneen 2020"  # "Four Things Everyone Should Know to Improve Batch Normalization"
BN_STATS_ANCHORS = {
    "small_batch_hurts": f"{WU_HE}, Fig. 1: BN's top-1 error 23.6% at 32 images per GPU, 27.3% at 4, 34.7% at 2",
    "precise_beats_ema": f"{WU_JOHNSON}, Sec. 3: error with EMA 35.5% vs PreciseBN 32.0% at normalization batch 2 "
                         "(23.7 vs 23.5 at 32)",
    "gn_flat": f"{WU_HE}, Fig. 1: at 2 images per GPU BN 34.7% vs GN 24.1% error (GN 24.0-24.2 at 2-32)",
    "renorm_helps": f"{IOFFE_2017}, Sec. 4: microbatches of 4, BN 74.2% vs Batch Renorm 76.5% accuracy",
    "frozen_tail_helps": f"{WU_JOHNSON}, Sec. 4.2: a FrozenBN tail (population statistics in training) helps "
                         "small normalization batches",
    "weighing_helps": f"{SUMMERS}, Sec. 3.3: weighing each example's own statistics into inference normalization "
                      "fixes a train-test discrepancy (the abstract: gains across batch sizes)",
    "target_stats_help": f"{WU_JOHNSON}, Sec. 5 (ImageNet-C): statistics recomputed on the target, error contrast "
                         "40.8 -> 33.1%, gaussian noise 64.4 -> 52.5%",
}
