"""The search benchmark (tools/benchmarks/search_cost): exact saved-tensor bytes,
k options per searched conv, conventional DNAS == masking with shared weights (Eq. 1 == Eq. 3),
masked memory flat in k, progress through logging, and the CLI's JSON. No timing assertions."""

import json
import logging
import os
import subprocess
import sys

import torch
import torch.nn as nn

from benchmarks.search_cost import cli
from benchmarks.search_cost.cli import resolve_args
from benchmarks.search_cost.conventional import (
    ConventionalChannel,
    masked_layers,
    option_widths,
    to_conventional,
)
from benchmarks.search_cost.measure import saved_bytes_of_step
from benchmarks.search_cost.network import (
    QUICK_LAYOUT,
    benchmark_space,
    block_output_options,
    build_supernet,
    option_range,
    plain_model,
)
from benchmarks.search_cost.report import PAPER_NOTE
from benchmarks.search_cost.run import run_benchmark
from benchmarks.search_cost.saved_tensors import SavedTensorMeter
from mobile_cv_nas.search import MaskedChannel

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


def _layout_block_widths(layout):
    return [width for _, width, _, repeat, _ in layout for _ in range(repeat)]


def test_option_range_and_space_have_k_options_with_a_fixed_max():
    assert option_range(32, 1) == [32]
    assert option_range(32, 32) == list(range(1, 33))
    assert option_range(64, 4) == [16, 32, 48, 64]
    for k in (1, 2, 8):
        net = build_supernet(k, (32,), QUICK_LAYOUT, num_classes=10)  # checks k options itself
        outputs = block_output_options(net)
        assert [max(opts) for _, opts in outputs] == _layout_block_widths(QUICK_LAYOUT)
        assert all(len(opts) == k for _, opts in outputs)
        layers = masked_layers(net)
        assert all(len(option_widths(m)) == k for _, _, m in layers)
        assert bool(layers) == (k > 1)
    space = benchmark_space(8, (32,), QUICK_LAYOUT, num_classes=10)
    assert space["width_divisor"] == 1
    # one expansion rate per row: mid widths follow the input's k widths, never k x k
    rows = [row for stage in space["stages"] for row in stage]
    assert all(isinstance(row.get("expansion", 1), (int, float)) for row in rows)
    assert [row.get("expansion") for row in rows] == [e for *_, e in QUICK_LAYOUT]


def test_plain_model_is_the_max_width_supernet():
    net = build_supernet(1, (32,), QUICK_LAYOUT, num_classes=10)
    plain = plain_model(QUICK_LAYOUT, num_classes=10, resolution=32)
    assert not any(isinstance(m, MaskedChannel) for m in plain.modules())
    supernet_shapes = sorted(tuple(p.shape) for p in net.weight_parameters())
    plain_shapes = sorted(tuple(p.shape) for p in plain.parameters())
    assert supernet_shapes == plain_shapes


def _alpha_grads(supernet):
    """{decision name: a copy of its logits' gradient (None if none)} of searched decisions."""
    return {
        name: None if d.alpha.grad is None else d.alpha.grad.detach().clone()
        for name, d in supernet.decisions.items()
    }


def test_conventional_dnas_equals_masking_with_shared_weights():
    """Eq. 1 (a conv per option, zero-padded, Gumbel-weighted) == Eq. 3 (one conv, mask)."""
    torch.manual_seed(0)
    k = 4
    net = build_supernet(k, (32,), QUICK_LAYOUT, num_classes=10).train()
    x = torch.randn(4, 3, 32, 32)
    masked_out = net(x)  # samples soft Gumbel gates
    masked_out.square().sum().backward(retain_graph=True)
    masked_alpha_grads = _alpha_grads(net)
    assert masked_alpha_grads and all(g is not None for g in masked_alpha_grads.values())
    n_masked = len(masked_layers(net))
    assert n_masked > 0

    net.zero_grad(set_to_none=True)
    net.auto_sample = False  # keep the same gates
    to_conventional(net)  # per-option convs start as slices of the shared weights
    convs = [m for m in net.modules() if isinstance(m, ConventionalChannel)]
    assert len(convs) == n_masked and not masked_layers(net)
    assert all(len(c.convs) == k for c in convs)
    dnas_out = net(x)
    torch.testing.assert_close(dnas_out, masked_out, rtol=1e-5, atol=1e-5)
    dnas_out.square().sum().backward()
    dnas_alpha_grads = _alpha_grads(net)
    assert dnas_alpha_grads.keys() == masked_alpha_grads.keys()
    for name, grad in masked_alpha_grads.items():
        torch.testing.assert_close(dnas_alpha_grads[name], grad, rtol=1e-4, atol=1e-5)


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
    # conventional DNAS grows with k: k per-option outputs per searched conv
    dnas2, dnas8 = saved(2, dnas=True), saved(8, dnas=True)
    assert one < dnas2 < dnas8 and dnas8 > 1.3 * eight, (one, dnas2, dnas8, eight)


def test_quick_cli_writes_json_with_all_rows(tmp_path, repo_root):
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "benchmark_search.py"), "--quick", "--quiet"]
        + ["--json", str(out), "--plot", str(plot)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
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


def test_progress_goes_through_logging_not_print(caplog, capsys):
    """run_benchmark prints nothing; it logs progress (INFO, DEBUG with quiet)."""
    argv = "--quick --ks 1,2 --variants plain,masked --repeats 1 --batch 2 --size 16 --no-plot"
    args = resolve_args(cli.build_parser().parse_args(argv.split() + ["--resolutions", ""]))
    with caplog.at_level(logging.INFO, logger="benchmarks.search_cost"):
        results = run_benchmark(args)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    progress = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith("[1/3] plain") for m in progress), progress
    assert [r["k"] for r in results["channels"]] == [1, 2]
    assert PAPER_NOTE in results["notes"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="benchmarks.search_cost"):
        run_benchmark(dict(args, quiet=True, ks=[1]))
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_strict_flag_sets_exit_code(monkeypatch):
    fake = {
        "settings": {"batch": 1, "size": 8, "device": "cpu", "threads": 1, "isolation": "none"},
        "channels": [],
        "resolution": [],
        "notes": [],
        "plain": {},
        "targets": [{"target": "t", "value": 2.0, "bound": 1.0, "pass": False}],
    }
    monkeypatch.setattr(cli, "run_benchmark", lambda args: dict(fake))
    assert cli.main(["--quick", "--no-plot", "--json", "", "--quiet"]) == 0
    assert cli.main(["--quick", "--no-plot", "--json", "", "--quiet", "--strict"]) == 1
