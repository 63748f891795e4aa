"""Clear errors: unknown names, malformed arch defs, broken or mismatched checkpoints."""

import copy

import pytest
import torch

from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import (
    ArchDefError,
    CheckpointError,
    build_model,
    load_arch_def,
    load_checkpoint,
    parse_arch_def,
)
from mobile_cv_nas.model_zoo import UnknownModelError

BASE = {
    "name": "tiny",
    "input_size": 32,
    "width_divisor": 8,
    "num_classes": 10,
    "stages": [
        [{"op": "conv_k3_hs", "out_channels": 8, "stride": 2}],
        [
            {"op": "ir_k3", "out_channels": 16, "stride": 2, "expansion": 4},
            {"op": "ir_k5_se_hs", "out_channels": 16, "expansion": 3},
        ],
        [{"op": "ir_pool_hs", "out_channels": 64, "expansion": 4}],
    ],
}


def with_row(stage, block, **changes):
    arch = copy.deepcopy(BASE)
    row = arch["stages"][stage][block]
    for key, value in changes.items():
        if value is _DROP:
            row.pop(key)
        else:
            row[key] = value
    return arch


_DROP = object()


def test_base_arch_builds():
    model = build_model(BASE).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_unknown_model_name():
    with pytest.raises(UnknownModelError, match=r"Unknown model 'FBNetV3_A'.*Available models: "):
        model_zoo.get("FBNetV3_A")
    with pytest.raises(KeyError, match="Did you mean 'fbnet_c'"):
        model_zoo.get_model_info("fbnet_cc")


@pytest.mark.parametrize(
    "stage, block, changes, field, words",
    [
        (
            1,
            1,
            {"op": "ir_k5_se_sh"},
            "op",
            ["Unknown block op 'ir_k5_se_sh'", "Did you mean", "'ir_k5_se_hs'"],
        ),
        (1, 0, {"out_channels": -16}, "out_channels", ["positive integer", "-16"]),
        (1, 0, {"out_channels": 16.5}, "out_channels", ["positive integer", "16.5"]),
        (1, 1, {"out_channels": _DROP}, "out_channels", ["missing required field"]),
        (0, 0, {"op": _DROP}, "op", ["missing required field"]),
        (1, 1, {"kernel": 7}, "kernel", ["takes no option 'kernel'", "'zero_last_bn_gamma'"]),
        (1, 0, {"expansion": -2}, "expansion", ["positive number", "-2"]),
        (1, 0, {"expansion": 0}, "expansion", ["positive number"]),
        (1, 0, {"expansion": "six"}, "expansion", ["positive number", "'six'"]),
        (0, 0, {"expansion": 4}, "expansion", ["has no expansion"]),
        (1, 0, {"stride": 0}, "stride", ["positive integer"]),
        (1, 0, {"repeat": -1}, "repeat", ["positive integer"]),
    ],
)
def test_malformed_row_names_stage_block_field(stage, block, changes, field, words):
    arch = with_row(stage, block, **changes)
    with pytest.raises(ArchDefError) as err:
        parse_arch_def(arch)
    msg = str(err.value)
    assert "arch 'tiny'" in msg
    assert f"stage {stage}" in msg and f"block {block}" in msg and f"field '{field}'" in msg, msg
    for word in words:
        assert word in msg, msg
    with pytest.raises(ArchDefError):  # the builder validates too
        build_model(arch)


def test_missing_or_empty_stages():
    arch = {k: v for k, v in BASE.items() if k != "stages"}
    with pytest.raises(ArchDefError, match=r"field 'stages'.*missing required field"):
        parse_arch_def(arch)
    with pytest.raises(ArchDefError, match=r"field 'stages'.*non-empty list"):
        parse_arch_def(dict(BASE, stages=[]))
    with pytest.raises(ArchDefError, match=r"stage 1: a stage must be a non-empty list"):
        parse_arch_def(dict(BASE, stages=[BASE["stages"][0], []]))


def test_bad_top_level_fields():
    with pytest.raises(ArchDefError, match=r"unknown top-level field\(s\) \['input_szie'\]"):
        parse_arch_def(dict(BASE, input_szie=64))
    with pytest.raises(ArchDefError, match=r"field 'width_divisor'.*positive integer"):
        parse_arch_def(dict(BASE, width_divisor=0))
    with pytest.raises(ArchDefError, match="block row must be a mapping"):
        parse_arch_def(dict(BASE, stages=[["ir_k3"]]))


def test_arch_def_file_errors(tmp_path):
    with pytest.raises(ArchDefError, match="does not exist"):
        load_arch_def(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [[{op: ir_k3, out_channels: 8}]\n")
    with pytest.raises(ArchDefError, match="not valid YAML"):
        load_arch_def(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("stages:\n  - - {op: ir_k3, out_channels: -8}\n")
    with pytest.raises(ArchDefError, match=r"stage 0, block 0, field 'out_channels'"):
        load_arch_def(str(wrong))


# --------------------------------------------------------------------------- checkpoints


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} was modified by a failed load"


@pytest.fixture(scope="module")
def f1_file(tmp_path_factory):
    model = model_zoo.get("FBNetV2_F1")
    path = tmp_path_factory.mktemp("f1") / "model.pth"
    torch.save({"model_ema": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path


def test_truncated_checkpoint(tmp_path, f1_file):
    data = f1_file.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    model = model_zoo.get("FBNetV2_F1")
    before = snapshot(model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, str(path))
    assert str(path) in str(err.value) and "truncated" in str(err.value)
    assert_unchanged(model, before)
    with pytest.raises(CheckpointError, match="truncated"):
        model_zoo.get("FBNetV2_F1", weights=str(path))


def test_missing_checkpoint_file(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        model_zoo.get("FBNetV2_F1", weights=str(path))
    assert str(path) in str(err.value)


def test_not_a_checkpoint_dict(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "optimizer": {}}, path)
    with pytest.raises(CheckpointError, match="neither 'model_ema' nor 'state_dict'"):
        model_zoo.get("FBNetV2_F1", weights=str(path))
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        model_zoo.get("FBNetV2_F1", weights=str(path))


def test_other_arch_weights_rejected_without_partial_load(f1_file):
    model = model_zoo.get("FBNetV2_F4")
    before = snapshot(model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, str(f1_file))
    msg = str(err.value)
    assert str(f1_file) in msg
    # every problem is counted and the first ones of each kind are listed, in model order
    ours, theirs = model.state_dict(), model_zoo.get("FBNetV2_F1").state_dict()
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    misshaped = [k for k in ours if k in theirs and ours[k].shape != theirs[k].shape]
    assert missing and unexpected and len(misshaped) > 20
    assert f"missing keys ({len(missing)}):\n    {missing[0]}\n" in msg
    assert f"unexpected keys ({len(unexpected)}):\n    {unexpected[0]}\n" in msg
    first = misshaped[0]
    assert f"mis-shaped keys ({len(misshaped)}):\n    {first}: checkpoint " in msg
    shapes = f"checkpoint {tuple(theirs[first].shape)} vs model {tuple(ours[first].shape)}"
    assert f"{first}: {shapes}" in msg
    assert f"... and {len(misshaped) - 20} more" in msg
    assert_unchanged(model, before)


def test_dropped_extra_and_reshaped_keys_are_all_listed(f1_file):
    model = model_zoo.get("FBNetV2_F1")
    state = torch.load(f1_file)["model_ema"]
    state.pop("module.backbone.stages.xif2_0.pw.bn.running_mean")
    state["module.backbone.stages.xif9_0.conv.weight"] = torch.zeros(1)
    state["module.head.conv.bias"] = torch.zeros(999)
    checkpoint = {"model_ema": state, "state_dict": None}
    before = snapshot(model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, checkpoint)
    msg = str(err.value)
    assert "missing keys (1):\n    backbone.stages.xif2_0.pw.bn.running_mean" in msg
    assert "unexpected keys (1):\n    backbone.stages.xif9_0.conv.weight" in msg
    assert "mis-shaped keys (1):\n    head.conv.bias: checkpoint (999,) vs model (1000,)" in msg
    assert_unchanged(model, before)


def test_checkpoint_with_python_objects_needs_trust(tmp_path):
    import collections as _collections
    import fractions  # any importable non-tensor object: unpickling it runs code

    from mobile_cv_nas.arch import CheckpointError, read_checkpoint_state_dict

    weights = _collections.OrderedDict(w=torch.ones(2))
    for zipped in (True, False):  # today's torch.save format and the pre-1.6 one
        path = tmp_path / f"odd_{zipped}.pth"
        data = {"state_dict": weights, "note": fractions.Fraction(1, 3)}
        torch.save(data, path, _use_new_zipfile_serialization=zipped)
        with pytest.raises(CheckpointError, match="trusted=True") as err:
            read_checkpoint_state_dict(str(path))
        assert "fractions.Fraction" in str(err.value) and "sha256=" in str(err.value)
        assert torch.equal(read_checkpoint_state_dict(str(path), trusted=True)["w"], torch.ones(2))


def _bad_files(tmp_path, f1_file):
    data = f1_file.read_bytes()
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(f1_file), legacy, _use_new_zipfile_serialization=False)
    files = {
        "random": torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes(),
        "html": b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
        "empty": b"",
        "truncated zip": data[: len(data) // 2],
        "truncated legacy": legacy.read_bytes()[:5000],
        "zip header only": data[:64],
    }
    for name, content in files.items():
        path = tmp_path / name.replace(" ", "_") / "model.pth"
        path.parent.mkdir()
        path.write_bytes(content)
        yield name, path


def test_corrupt_checkpoints_are_not_called_untrusted(tmp_path, f1_file):
    """Random bytes, an HTML page saved as model.pth, truncated files: one short error saying
    the file is corrupt and what to do; never the trusted=True advice, and never to delete a
    local file (a downloaded copy is, see test_io)."""
    for name, path in _bad_files(tmp_path, f1_file):
        model = model_zoo.get("FBNetV2_F1")
        before = snapshot(model)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(model, str(path), trusted=False)
        msg = str(err.value)
        assert str(path) in msg, (name, msg)
        assert "not a PyTorch checkpoint" in msg and "Pass another file" in msg, (name, msg)
        assert "delete" not in msg.lower(), (name, msg)  # a local file may be the only copy
        assert "trusted" not in msg, (name, msg)
        assert len(msg.splitlines()) == 1 and err.value.__cause__ is None, (name, msg)
        if name == "html":
            assert "HTML" in msg
        if name.startswith("truncated"):
            assert "truncated" in msg
        assert_unchanged(model, before)
        # trust does not turn a corrupt file into a different error
        with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
            load_checkpoint(model, str(path), trusted=True)


# ------------------------------------------------------------- nothing silent: models


def test_unknown_block_defaults_key_is_named_with_a_suggestion():
    with pytest.raises(ArchDefError) as err:
        parse_arch_def(dict(BASE, block_defaults={"zero_last_bn_gama": True}))
    msg = str(err.value)
    assert "field 'block_defaults'" in msg and "'zero_last_bn_gama'" in msg
    assert "Did you mean 'zero_last_bn_gamma'" in msg
    with pytest.raises(ArchDefError, match="'stride' belongs in each block row"):
        parse_arch_def(dict(BASE, block_defaults={"stride": 2}))
    # a key some op of the arch takes is fine, and reaches the blocks that take it
    model = build_model(dict(BASE, block_defaults={"norm": "frozen_bn"}))
    assert type(model.backbone.stages.xif1_0.dw.bn).__name__ == "FrozenBatchNorm2d"


@pytest.mark.parametrize("where", ["row", "defaults"])
def test_bad_norm_name_is_located(where):
    arch = copy.deepcopy(BASE)
    if where == "row":
        arch["stages"][1][0]["norm"] = "batchnorm"
    else:
        arch["block_defaults"] = {"norm": "batchnorm"}
    with pytest.raises(ArchDefError, match=r"(block 0, field 'norm'|key 'norm').*Unknown norm"):
        parse_arch_def(arch)


def test_num_classes_zero_returns_pooled_features_and_negative_is_refused():
    model = build_model(BASE, num_classes=0).eval()
    with torch.no_grad():
        features = model(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, 64) and model.head.conv is None
    assert model_zoo.get("FBNetV2_F1", num_classes=0)(torch.zeros(1, 3, 64, 64)).shape == (1, 1600)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="num_classes.*integer >= 0"):
            build_model(BASE, num_classes=bad)
    with pytest.raises(ArchDefError, match="field 'num_classes'.*integer >= 0"):
        parse_arch_def(dict(BASE, num_classes=-3))


def test_out_features_as_a_string_is_refused():
    from mobile_cv_nas.arch import build_backbone

    for make in (
        lambda: build_backbone(BASE, out_features="stage1"),
        lambda: model_zoo.get("FBNetV2_F1", out_features="stage3"),
    ):
        with pytest.raises(TypeError, match=r"out_features must be a list.*\['stage"):
            make()
    with pytest.raises(ValueError, match="out_features is empty"):
        model_zoo.get("FBNetV2_F1", out_features=[])


def test_zoo_model_with_another_norm_loads_batch_norm_weights(tmp_path):
    from torchvision.ops import FrozenBatchNorm2d

    source = model_zoo.get("FBNetV2_F1").eval()
    with torch.no_grad():
        for name, t in source.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                t.normal_()
    path = tmp_path / "model.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    frozen = model_zoo.get("fbnetv2_f1", weights=str(path), norm="frozen_bn").eval()
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(frozen(x), source(x), atol=1e-5)
