"""Our modules carry the official names and shapes, so official checkpoints load unchanged.

The reference is tests/data (see its README.md): the official state_dict listings of
FBNetV2_F1/L1 and, for every published arch, the `resolved_blocks` of fbnetv2_archs.yaml (what
the official builder makes) and the official state_dict entry count.
"""

import pytest
import torch.nn as nn
import yaml

from mobile_cv_nas import model_zoo
from mobile_cv_nas.layers import HSigmoid, HSwish

ALL_ARCHS = [
    "FBNetV2_F0",
    "FBNetV2_F1",
    "FBNetV2_F2",
    "FBNetV2_F3",
    "FBNetV2_F4",
    "FBNetV2_L1",
    "FBNetV2_L2",
    "fbnet_a",
    "fbnet_b",
    "fbnet_c",
]

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def reference_archs(data_dir):
    with open(data_dir / "fbnetv2_archs.yaml") as f:
        return yaml.safe_load(f)["models"]


def layout(model):
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def read_listing(path):
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            entries.append((key, yaml.safe_load(shape)))
    return entries


def conv_entries(prefix, d):
    """Keys of a conv-BN-act container described by {in, out, k, groups, bias, bn}."""
    out = [(f"{prefix}.conv.weight", [d["out"], d["in"] // d["groups"], d["k"], d["k"]])]
    if d["bias"]:
        out.append((f"{prefix}.conv.bias", [d["out"]]))
    if d["bn"]:
        out += [
            (f"{prefix}.bn.{k}", [] if k == "num_batches_tracked" else [d["out"]]) for k in BN_KEYS
        ]
    return out


def expected_layout(ref):
    """The official state_dict (keys and shapes, in order) derived from `resolved_blocks`."""
    out = []
    for block in ref["resolved_blocks"]:
        p = f"backbone.stages.{block['id']}"
        kind = block["type"]
        if kind == "ConvBNRelu":
            out += conv_entries(p, block["conv"])
        elif kind == "Identity":
            if block["projection"] is not None:
                out += conv_entries(f"{p}.conv", block["projection"])
        elif kind == "IRFBlock":
            if block["pw"] is not None:
                out += conv_entries(f"{p}.pw", block["pw"])
            out += conv_entries(f"{p}.dw", block["dw"])
            se = block["se"]
            if se is not None:
                out += [
                    (f"{p}.se.se.0.conv.weight", [se["mid"], se["in"], 1, 1]),
                    (f"{p}.se.se.0.conv.bias", [se["mid"]]),
                    (f"{p}.se.se.1.weight", [se["in"], se["mid"], 1, 1]),
                    (f"{p}.se.se.1.bias", [se["in"]]),
                ]
            out += conv_entries(f"{p}.pwl", block["pwl"])
        elif kind == "IRPoolBlock":
            assert block["pw_se"] is None and block["se"] is None
            out += conv_entries(f"{p}.pw", block["pw"])
            out += conv_entries(f"{p}.pwl", block["pwl"])
        else:
            raise AssertionError(f"unknown block type {kind!r} in the reference")
    head = ref["head"]["conv1x1"]
    out.append(("head.conv.weight", [head["out"], head["in"], 1, 1]))
    if head["bias"]:
        out.append(("head.conv.bias", [head["out"]]))
    return out


def diff(ours, expected):
    ours_d, exp_d = dict(ours), dict(expected)
    lines = [f"missing {k} {v}" for k, v in expected if k not in ours_d]
    lines += [f"unexpected {k} {v}" for k, v in ours if k not in exp_d]
    lines += [
        f"shape {k}: ours {ours_d[k]} vs {v}" for k, v in expected if k in ours_d and ours_d[k] != v
    ]
    return "\n".join(lines[:30]) or "same entries, different order"


@pytest.mark.parametrize("name", ["FBNetV2_F1", "FBNetV2_L1"])
def test_state_dict_equals_official_listing(name, data_dir, zoo_model):
    """Every key and shape of the official checkpoint, in order (so strict loading works)."""
    expected = read_listing(data_dir / "checkpoint_layouts" / f"{name}.txt")
    ours = layout(zoo_model(name))
    assert ours == expected, diff(ours, expected)


@pytest.mark.parametrize("name", ["FBNetV2_F1", "FBNetV2_L1"])
def test_reference_derivation_reproduces_listing(name, data_dir, reference_archs):
    """Guards the derivation used below: it must give exactly the official listing."""
    expected = read_listing(data_dir / "checkpoint_layouts" / f"{name}.txt")
    assert expected_layout(reference_archs[name]) == expected
    assert len(expected) == reference_archs[name]["state_dict_entries"]


@pytest.mark.parametrize("name", ALL_ARCHS)
def test_state_dict_matches_resolved_blocks(name, reference_archs, zoo_model):
    """The state_dict the official builder makes for each published arch, entry for entry."""
    assert name in reference_archs
    expected = expected_layout(reference_archs[name])
    ours = layout(zoo_model(name))
    assert ours == expected, diff(ours, expected)
    assert len(ours) == reference_archs[name]["state_dict_entries"]


def test_reference_lists_exactly_our_archs(reference_archs):
    """Every published arch is in the zoo, and these tests cover all of them."""
    assert sorted(reference_archs) == sorted(ALL_ARCHS)
    assert set(ALL_ARCHS) <= set(model_zoo.list_models())


def _act_type(container):
    act = getattr(container, "relu", None)
    if act is None:
        return "none"
    if isinstance(act, nn.ReLU):
        return "relu"
    if isinstance(act, HSwish):
        return "hswish"
    return type(act).__name__


def _check_conv(container, d, where):
    conv = container.conv
    assert isinstance(conv, nn.Conv2d), where
    assert conv.kernel_size == (d["k"], d["k"]), where
    assert conv.stride == (d["stride"], d["stride"]), where
    assert conv.padding == (d["k"] // 2, d["k"] // 2), where
    assert conv.groups == d["groups"], where
    assert (conv.bias is not None) == d["bias"], where
    assert hasattr(container, "bn") == d["bn"], where
    if d["bn"]:
        assert container.bn.eps == 1e-5 and container.bn.momentum == 0.1, where
    assert _act_type(container) == d["act"], where


@pytest.mark.parametrize("name", ALL_ARCHS)
def test_block_structure_matches_resolved_blocks(name, reference_archs, zoo_model):
    """Strides, activations, residuals and SE gates as the official builder makes them."""
    ref = reference_archs[name]
    stages = zoo_model(name).backbone.stages
    assert [n for n, _ in stages.named_children()] == [b["id"] for b in ref["resolved_blocks"]]
    for block in ref["resolved_blocks"]:
        module, where = getattr(stages, block["id"]), f"{name}.{block['id']}"
        kind = block["type"]
        if kind == "ConvBNRelu":
            _check_conv(module, block["conv"], where)
        elif kind == "Identity":
            if block["projection"] is None:
                assert module.conv is None and not list(module.parameters()), where
            else:
                _check_conv(module.conv, block["projection"], where)
        elif kind == "IRFBlock":
            for part in ("pw", "dw", "pwl"):
                if block[part] is None:
                    assert getattr(module, part) is None, f"{where}.{part}"
                else:
                    _check_conv(getattr(module, part), block[part], f"{where}.{part}")
            assert module.use_residual == block["residual"], where
            assert module.mid_channels == block["mid_channels"], where
            shuffle = block["channel_shuffle_groups"]
            assert (module.shuffle.groups if module.shuffle is not None else None) == shuffle, where
            if block["se"] is None:
                assert module.se is None, where
            else:
                reduce, expand, gate = module.se.se
                assert _act_type(reduce) == block["se"]["inner_act"], where
                assert block["se"]["gate"] == "hsigmoid" and isinstance(gate, HSigmoid), where
        elif kind == "IRPoolBlock":
            _check_conv(module.pw, block["pw"], f"{where}.pw")
            _check_conv(module.pwl, block["pwl"], f"{where}.pwl")
            assert isinstance(module.dw, nn.AdaptiveAvgPool2d), where
    head, ref_head = zoo_model(name).head.conv, ref["head"]["conv1x1"]
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
    assert (head.in_channels, head.out_channels) == (ref_head["in"], ref_head["out"])
    assert (head.bias is not None) == ref_head["bias"]


@pytest.mark.parametrize("name", ALL_ARCHS)
def test_input_size_matches_reference(name, reference_archs):
    """The arch def and the catalog use the official crop resolution."""
    assert model_zoo.get_arch_def(name).input_size == reference_archs[name]["input_size"]
    assert model_zoo.get_model_info(name)["resolution"] == reference_archs[name]["input_size"]


@pytest.mark.parametrize("name", ALL_ARCHS)
def test_zero_last_bn_gamma_init(name, reference_archs, zoo_model):
    """`zero_last_bn_gamma` zeroes the pwl BN gamma only in residual blocks, as officially."""
    ref = reference_archs[name]
    flagged = set(ref["zero_last_bn_gamma"])  # blocks whose arch-def row sets the flag
    stages = zoo_model(name).backbone.stages
    for block in ref["resolved_blocks"]:
        if block["type"] != "IRFBlock":
            continue
        gamma = getattr(stages, block["id"]).pwl.bn.weight
        if block["id"] in flagged and block["residual"]:
            assert gamma.abs().sum() == 0, block["id"]
        else:
            assert (gamma == 1).all(), block["id"]
