"""The search benchmark's measurement logic (mobile_cv_nas.benchmarks.search_cost): exact saved-tensor
bytes, conventional DNAS == masking with shared weights (Eq. 1 == Eq. 3), masked memory flat in
k, and the CLI's JSON. No timing assertions."""

import json
import os
import subprocess
import sys

import torch
import torch.nn as nn

from mobile_cv_nas.benchmarks.search_cost import (
    QUICK_LAYOUT,
    ConventionalChannel,
    SavedTensorMeter,
    benchmark_space,
    build_supernet,
    option_range,
    plain_model,
    saved_bytes_of_step,
    to_conventional,
)
from mobile_cv_nas.search.masked_channel import MaskedChannel

F32 = 4  # bytes per float32


def test_saved_bytes_hand_computed():
    a = torch.randn(4, 5, requires_grad=True)  # 80 bytes, not a parameter: counted
    w = nn.Parameter(torch.randn(5, 3))  # 60 bytes, a parameter: excluded
    with SavedTensorMeter() as meter:
        b = a.sigmoid()  # saves its output b: 80
        c = b * a  # saves b (again) and a: +80
        d = a[:2] * a[2:]  # views of a: a's storage, already counted
        e = c @ w  # saves c (+80) and w (excluded)
        loss = e.sum() + d.sum() + (b * 2.0).sum()  # sums and scalar products save no tensor
    assert meter.bytes == 3 * 20 * F32
    assert meter.excluded_bytes == 15 * F32
    loss.backward()  # the hooks hand the tensors back unchanged
    assert a.grad is not None and w.grad is not None


def test_saved_bytes_excludes_given_parameters_and_counts_storages_once():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 6, 6)
    with SavedTensorMeter(exclude=conv.parameters()) as meter:
        y = conv(x)  # saves x (input, counted) and the weight (excluded)
        z = torch.relu(y)  # saves its output
        (z * z).sum()  # saves z twice: one storage
    assert meter.bytes == x.numel() * F32 + z.numel() * F32
    assert meter.excluded_bytes == conv.weight.numel() * F32


def test_option_range_and_space_have_k_options_with_a_fixed_max():
    assert option_range(32, 1) == [32]
    assert option_range(32, 32) == list(range(1, 33))
    assert option_range(64, 4) == [16, 32, 48, 64]
    for k in (1, 2, 8):
        net = build_supernet(k, (32,), QUICK_LAYOUT, num_classes=10)  # checks k options itself
        for block in net.backbone.stages.children():
            assert block.out_choice.max_channels == block.spec.channels[-1]
    space = benchmark_space(8, (32,), QUICK_LAYOUT, num_classes=10)
    assert space["width_divisor"] == 1


def test_plain_model_is_the_max_width_supernet():
    net = build_supernet(1, (32,), QUICK_LAYOUT, num_classes=10)
    plain = plain_model(QUICK_LAYOUT, num_classes=10, resolution=32)
    assert not any(isinstance(m, MaskedChannel) for m in plain.modules())
    supernet_shapes = sorted(tuple(p.shape) for p in net.weight_parameters())
    plain_shapes = sorted(tuple(p.shape) for p in plain.parameters())
    assert supernet_shapes == plain_shapes


def test_conventional_dnas_equals_masking_with_shared_weights():
    """Eq. 1 (a conv per option, zero-padded, Gumbel-weighted) == Eq. 3 (one conv, mask)."""
    torch.manual_seed(0)
    k = 4
    net = build_supernet(k, (32,), QUICK_LAYOUT, num_classes=10).train()
    x = torch.randn(4, 3, 32, 32)
    masked_out = net(x)  # samples soft Gumbel gates
    masked_out.square().sum().backward(retain_graph=True)
    masked_alpha_grads = {n: d.alpha.grad.clone() for n, d in net.decisions.items()}
    n_masked = sum(isinstance(m, MaskedChannel) for m in net.modules())
    assert n_masked > 0

    net.zero_grad(set_to_none=True)
    net.auto_sample = False  # keep the same gates
    to_conventional(net)  # per-option convs start as slices of the shared weights
    convs = [m for m in net.modules() if isinstance(m, ConventionalChannel)]
    assert len(convs) == n_masked and not any(isinstance(m, MaskedChannel) for m in net.modules())
    assert all(len(c.convs) == k for c in convs)
    dnas_out = net(x)
    torch.testing.assert_close(dnas_out, masked_out, rtol=1e-5, atol=1e-5)
    dnas_out.square().sum().backward()
    for name, grad in masked_alpha_grads.items():
        torch.testing.assert_close(net.decisions[name].alpha.grad, grad, rtol=1e-4, atol=1e-5)


def test_masked_saved_bytes_flat_in_k_and_dnas_not():
    x = torch.randn(4, 3, 32, 32)
    target = torch.randint(0, 10, (4,))

    def saved(k, dnas=False):
        torch.manual_seed(0)
        net = build_supernet(k, (32,), QUICK_LAYOUT, num_classes=10).train()
        if dnas:
            to_conventional(net)
        return saved_bytes_of_step(net, x, target)[0]

    one, eight = saved(1), saved(8)
    assert abs(eight / one - 1) <= 0.02, (one, eight)
    plain = plain_model(QUICK_LAYOUT, num_classes=10, resolution=32).train()
    assert abs(saved_bytes_of_step(plain, x, target)[0] / one - 1) <= 0.02
    assert saved(8, dnas=True) > 2 * eight  # conventional DNAS grows with k


def test_quick_cli_writes_json_with_all_rows(tmp_path, repo_root):
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "benchmark_search.py"), "--quick",
         "--json", str(out), "--plot", str(plot), "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    results = json.loads(out.read_text())
    assert plot.is_file() and plot.stat().st_size > 0
    ks = results["settings"]["ks"]
    assert [r["k"] for r in results["channels"]] == ks and len(ks) >= 2
    for row in results["channels"]:
        for variant in ("masked", "plain", "dnas"):
            m = row[variant]
            assert m["saved_bytes"] > 0 and m["step_time_s"] > 0 and m["repeats"] >= 1
            assert row[f"{variant}_saved_vs_plain"] > 0
    assert len(results["resolution"]) == len(results["settings"]["resolution_sets"])
    for row in results["resolution"]:
        assert row["flop_ratio"] >= 1 and row["time_bound"] >= 1.1 * row["pixel_ratio"] - 1e-9
    names = [t["target"] for t in results["targets"]]
    assert len(names) == 3 + len(results["resolution"])
    assert all(isinstance(t["pass"], bool) for t in results["targets"])


def test_strict_flag_sets_exit_code(monkeypatch):
    from mobile_cv_nas.benchmarks import search_cost as benchmark

    fake = {
        "settings": {"batch": 1, "size": 8, "device": "cpu", "threads": 1, "isolation": "none"},
        "channels": [], "resolution": [], "notes": [], "plain": {},
        "targets": [{"target": "t", "value": 2.0, "bound": 1.0, "pass": False}],
    }
    monkeypatch.setattr(benchmark, "run_benchmark", lambda args: dict(fake))
    assert benchmark.main(["--quick", "--no-plot", "--json", "", "--quiet"]) == 0
    assert benchmark.main(["--quick", "--no-plot", "--json", "", "--quiet", "--strict"]) == 1
