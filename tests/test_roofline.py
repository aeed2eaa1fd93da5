"""The roofline's accounting (scripts/roofline.py): FLOPs, minimum bytes and bounds of single ops."""
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.module_tracker import ModuleTracker

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import roofline  # noqa: E402


def costs(fn) -> list[roofline.Call]:
    timer = roofline.OpTimer(ModuleTracker())
    with timer.tracker, timer:
        fn()
    return timer.calls


def test_a_gemm_counts_its_flops_and_each_operand_once():
    a, b = torch.rand(64, 32), torch.rand(32, 16)
    (call,) = costs(lambda: a @ b)
    assert call.flops == 2 * 64 * 32 * 16
    assert call.nbytes == 4 * (64 * 32 + 32 * 16 + 64 * 16)
    assert len(call.seconds) == 1 and call.seconds[0] > 0


def test_views_move_nothing_and_an_expanded_input_is_read_once():
    x = torch.rand(1, 100)
    calls = costs(lambda: x.expand(50, 100) * 2)
    view, mul = calls
    assert view.nbytes == 0 and view.name.startswith("expand")
    assert mul.nbytes == 4 * (100 + 50 * 100)  # the 100 floats read once, 5,000 written


@pytest.mark.parametrize("groups", [1, 3])
def test_a_convolution_backward_costs_twice_its_forward_grouped_or_not(groups):
    x = torch.rand(4, 3 * groups, 8, 8, requires_grad=True)
    w = torch.rand(5 * groups, 3, 3, 3, requires_grad=True)
    calls = costs(lambda: F.conv2d(x, w, padding=1, groups=groups).sum().backward())
    forward = next(c for c in calls if c.name.startswith("convolution @") or c.name == "convolution")
    backward = next(c for c in calls if c.name.startswith("convolution_backward"))
    assert forward.flops == 2 * w.numel() * 4 * 8 * 8
    assert backward.flops == 2 * forward.flops
    if groups == 1:  # where torch's counter is right, the two agree
        with FlopCounterMode(display=False) as counter:
            F.conv2d(x, w, padding=1).sum().backward()
        assert backward.flops + forward.flops == counter.get_total_flops()


def test_the_bound_takes_the_slower_roof_and_the_cache_aware_one_is_stricter():
    roofs = roofline.Roofs(peak=1e11, bandwidth=[(2**20, 1e11), (2**30, 1e10)])
    assert roofs.bound(1e9, 1e3) == pytest.approx(1e-2)  # compute-bound
    assert roofs.bound(1e3, 1e8) == pytest.approx(1e-2)  # memory-bound, at the DRAM roof
    assert roofs.bound(1e3, 1e5, cache_aware=True) == pytest.approx(1e-6)
    assert roofs.bound(1e3, 1e5) == pytest.approx(1e-5)


def test_the_account_sums_the_calls_and_names_the_furthest_first():
    roofs = roofline.Roofs(peak=1e9, bandwidth=[(2**30, 1e9)])
    calls = [roofline.Call("near", 1e6, 0, [1.1e-3, 2e-3]), roofline.Call("far", 1e6, 0, [5e-3])]
    a = roofline.account({"key": "t", "title": "t", "step_s": 1e-2, "calls": calls}, roofs, top=1)
    assert a["bound_s"] == pytest.approx(2e-3) and a["ops_s"] == pytest.approx(6.1e-3)
    assert [name for name, _ in a["worst"]] == ["far"]
    r = roofline.report(a, roofs)
    assert r["roofline_t_pct"] == pytest.approx(20.0)
