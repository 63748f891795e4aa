"""mobile_cv_nas.detection with the real detectron2: the FBNet backbones (C4, FPN, RetinaNet)
and their output shapes at any input size, freezing, the light heads in full detectron2 models
(inference and training losses), ImageNet-weight conversion (file, checkpointer, fbnet_zoo://
through a user catalog, offline) and the errors."""

import argparse
import math

import pytest
import torch
import torch.nn as nn
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm, ShapeSpec
from detectron2.modeling import (
    BACKBONE_REGISTRY,
    build_backbone,
    build_model,
)
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import mobile_cv_nas.detection as det
from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import CheckpointError
from mobile_cv_nas.arch import build_model as build_classifier
from mobile_cv_nas.arch.builder import FBNetBackbone
from mobile_cv_nas.config import ArchConfigError, resolve_arch
from mobile_cv_nas.layers import freeze_norms, resolve_norm
from mobile_cv_nas.publish import publish_model

REGISTRIES = {
    "BACKBONE": BACKBONE_REGISTRY,
    "RPN_HEAD": RPN_HEAD_REGISTRY,
    "ROI_BOX_HEAD": ROI_BOX_HEAD_REGISTRY,
    "ROI_HEADS": ROI_HEADS_REGISTRY,
}
#: What the official FBNetV2 detection stack (d2go) registers in the same registries.
D2GO_NAMES = {
    "BACKBONE": {"FBNetV2C4Backbone", "FBNetV2FpnBackbone", "FBNetV2RetinaNetBackbone"},
    "RPN_HEAD": {"FBNetV2RpnHead"},
    "ROI_BOX_HEAD": {"FBNetV2RoIBoxHead"},
    "ROI_HEADS": set(),
}
RETINA_SIZES = (32, 64, 128, 256, 512)
SIZES = [(224, 224), (200, 232), (320, 320)]
IMAGENET_PIXELS = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


def make_cfg(backbone, arch="FBNetV2_F4", **fbnet):
    """A detectron2 config with our keys for `backbone` (c4, fpn, retinanet), consistent feature
    names for its RPN/RoI/RetinaNet heads, small proposal counts (CPU)."""
    cfg = det.add_fbnetv2_config(get_cfg())
    m = cfg.MODEL
    m.DEVICE = "cpu"
    m.MOBILE_CV_NAS.ARCH = arch
    for key, value in fbnet.items():
        m.MOBILE_CV_NAS[key] = value
    cfg.INPUT.FORMAT = "RGB"
    m.PIXEL_MEAN, m.PIXEL_STD = IMAGENET_PIXELS["mean"], IMAGENET_PIXELS["std"]
    m.BACKBONE.NAME = f"build_fbnetv2_{backbone}_backbone"
    m.RPN.HEAD_NAME = "FBNetV2LightRPNHead"
    m.ROI_HEADS.NUM_CLASSES = m.RETINANET.NUM_CLASSES = 3
    m.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    m.RPN.PRE_NMS_TOPK_TRAIN = m.RPN.PRE_NMS_TOPK_TEST = 200
    m.RPN.POST_NMS_TOPK_TRAIN = m.RPN.POST_NMS_TOPK_TEST = 50
    if backbone == "c4":
        m.RPN.IN_FEATURES = m.ROI_HEADS.IN_FEATURES = ["stage4"]
        m.ROI_HEADS.NAME = "FBNetV2C4ROIHeads"
    elif backbone == "fpn":
        m.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        m.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
        m.ROI_HEADS.NAME = "StandardROIHeads"
        m.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
        m.ROI_BOX_HEAD.NAME = "FBNetV2BlockBoxHead"
        m.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    else:
        m.META_ARCHITECTURE = "RetinaNet"
        m.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
        m.RETINANET.SCORE_THRESH_TEST = 0.0  # untrained: every score is near the 0.01 prior
        m.ANCHOR_GENERATOR.SIZES = [[s, s * 2 ** (1 / 3), s * 2 ** (2 / 3)] for s in RETINA_SIZES]
    return cfg


def batch(h=150, w=190):
    """One random image (sides not multiples of 32) with two boxes."""
    instances = Instances((h, w))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 80.0, 120.0], [50.0, 30.0, 150.0, 90.0]]))
    instances.gt_classes = torch.tensor([0, 2])
    image = torch.randint(0, 256, (3, h, w)).float()
    return [{"image": image, "instances": instances, "height": h, "width": w}]


def official_checkpoint(path, arch="FBNetV2_F4"):
    """A zoo arch's classifier with random weights, saved in the official format."""
    model = model_zoo.get(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_()
    torch.save({"state_dict": model.state_dict(), "model_ema": None}, path)
    return model.state_dict()


# --------------------------------------------------------------------------- config, registry


def test_registered_names_are_ours_and_collide_with_nobody():
    ours = det.REGISTERED_NAMES
    assert set(ours) == set(REGISTRIES)
    for kind, registry in REGISTRIES.items():
        names = dict(registry)
        builtin = {n for n, obj in names.items() if obj.__module__.startswith("detectron2.")}
        assert builtin, kind  # detectron2's own are there too, side by side
        for name in ours[kind]:
            assert name in names and names[name].__module__.startswith("mobile_cv_nas.detection")
            assert "fbnetv2" in name.lower()
        assert not set(ours[kind]) & (builtin | D2GO_NAMES[kind])


def test_add_fbnetv2_config_is_idempotent_and_merges():
    cfg = det.add_fbnetv2_config(get_cfg())
    node = cfg.MODEL.MOBILE_CV_NAS
    assert set(node) == {
        "ARCH",
        "ARCH_DEF",
        "WIDTH_DIVISOR",
        "NORM",
        "OUT_FEATURES",
        "HEAD_NORM",
        "BOX_HEAD_BLOCKS",
    }
    assert (node.ARCH, node.NORM, node.WIDTH_DIVISOR, node.OUT_FEATURES) == ("", "BN", 0, [])
    node.ARCH = "FBNetV2_F1"
    assert det.add_fbnetv2_config(cfg) is cfg and cfg.MODEL.MOBILE_CV_NAS.ARCH == "FBNetV2_F1"
    cfg.merge_from_list(
        ["MODEL.MOBILE_CV_NAS.OUT_FEATURES", "['stage4']", "MODEL.MOBILE_CV_NAS.NORM", "GN"]
    )
    assert cfg.MODEL.MOBILE_CV_NAS.OUT_FEATURES == ["stage4"]
    # an inline arch def survives a dump and a merge into a fresh config
    cfg.MODEL.MOBILE_CV_NAS.ARCH = ""
    cfg.MODEL.MOBILE_CV_NAS.ARCH_DEF.stages = model_zoo.get_arch_def("FBNetV2_F4").stages
    again = det.add_fbnetv2_config(get_cfg())
    again.merge_from_other_cfg(type(cfg).load_cfg(cfg.dump()))
    arch, info = resolve_arch(again)
    assert info is None and arch.name == "MODEL.MOBILE_CV_NAS.ARCH_DEF"
    assert arch.stages == model_zoo.get_arch_def("FBNetV2_F4").stages


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("arch", ["FBNetV2_F4", "FBNetV2_F1"])
@pytest.mark.parametrize("backbone", ["c4", "fpn", "retinanet"])
def test_output_shape_matches_the_feature_maps(backbone, arch):
    cfg = make_cfg(backbone, arch)
    model = build_backbone(cfg).eval()
    shapes = model.output_shape()
    expected = {
        "c4": ["stage4"],
        "fpn": ["p2", "p3", "p4", "p5", "p6"],
        "retinanet": ["p3", "p4", "p5", "p6", "p7"],
    }[backbone]
    assert list(shapes) == expected
    if backbone == "c4":
        channels = model_zoo.get_arch_def(arch).stages[4][-1]["out_channels"]
        assert (shapes["stage4"].channels, shapes["stage4"].stride) == (channels, 16)
        assert model.size_divisibility == 0
    else:
        assert {s.channels for s in shapes.values()} == {cfg.MODEL.FPN.OUT_CHANNELS}
        assert [s.stride for s in shapes.values()] == [2 ** int(n[1:]) for n in expected]
        assert model.size_divisibility == 32
    for h, w in SIZES:
        with torch.no_grad():
            out = model(torch.randn(1, 3, h, w))
        assert isinstance(out, dict) and list(out) == expected
        for name, spec in shapes.items():
            want = (1, spec.channels, math.ceil(h / spec.stride), math.ceil(w / spec.stride))
            assert tuple(out[name].shape) == want, (name, h, w)


def test_bottom_up_features_are_the_arch_stages():
    cfg = make_cfg("fpn", "FBNetV2_F4")
    bottom_up = build_backbone(cfg).bottom_up
    assert isinstance(bottom_up, det.FBNetV2Backbone) and isinstance(bottom_up, FBNetBackbone)
    assert bottom_up.stage_names == [f"stage{i}" for i in range(6)]  # built up to stage5
    shapes = bottom_up.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "stage2": (24, 4),
        "stage3": (32, 8),
        "stage4": (112, 16),
        "stage5": (224, 32),
    }
    # the same maps as the zoo's classification backbone, at a size not divisible by 32
    zoo = model_zoo.get("FBNetV2_F4", out_features=list(shapes)).eval()
    zoo.load_state_dict(bottom_up.state_dict(), strict=False)
    x = torch.randn(1, 3, 200, 232)
    with torch.no_grad():
        ours, theirs = bottom_up.eval()(x), zoo(x)
    for name in shapes:
        torch.testing.assert_close(ours[name], theirs[name])


def test_fpn_at_any_size_equals_the_padded_image():
    model = build_backbone(make_cfg("fpn")).eval()
    x = torch.randn(1, 3, 200, 232)
    padded = torch.nn.functional.pad(x, (0, 256 - 232, 0, 224 - 200))
    with torch.no_grad():
        out, ref = model(x), model(padded)
    for name, v in out.items():
        h, w = v.shape[-2:]
        torch.testing.assert_close(v, ref[name][..., :h, :w])


# --------------------------------------------------------------------------- freezing


def _block_stage(name):
    return int(name.split("xif")[1].split("_")[0])


@pytest.mark.parametrize("freeze_at", [0, 1, 2])
def test_freeze_at_freezes_exactly_the_first_stages(freeze_at):
    cfg = make_cfg("fpn")
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    model = build_backbone(cfg)
    bottom_up = model.bottom_up
    assert bottom_up.freeze_at == freeze_at
    for name, p in model.named_parameters():
        frozen = name.startswith("bottom_up.stages.") and _block_stage(name) < freeze_at
        assert p.requires_grad is not frozen, name
    norms = [
        (name, m)
        for name, m in bottom_up.stages.named_modules()
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))
    ]
    for name, m in norms:
        if _block_stage(name) < freeze_at:
            assert type(m) is FrozenBatchNorm2d, name
        else:
            assert type(m) is nn.BatchNorm2d, name
    # a training step leaves the frozen statistics alone and updates the others
    before = {k: v.clone() for k, v in bottom_up.state_dict().items() if "running_mean" in k}
    model.train()(torch.randn(2, 3, 64, 64))
    after = bottom_up.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value) is (_block_stage(key) < freeze_at), key


def test_freeze_at_bounds_and_frozen_bn_norm():
    cfg = make_cfg("c4")
    cfg.MODEL.BACKBONE.FREEZE_AT = 5  # stages 0-4: the whole C4 backbone
    model = build_backbone(cfg)
    assert not any(p.requires_grad for p in model.parameters())
    cfg.MODEL.BACKBONE.FREEZE_AT = 6
    with pytest.raises(det.DetectionConfigError, match="at most 5"):
        build_backbone(cfg)
    cfg = make_cfg("c4", NORM="FrozenBN")
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    model = build_backbone(cfg)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(type(m) is FrozenBatchNorm2d for m in norms)
    assert all(p.requires_grad for p in model.parameters())  # FREEZE_AT 0: convs train


@pytest.mark.parametrize(
    "norm, kind",
    [("SyncBN", nn.SyncBatchNorm), ("naiveSyncBN", NaiveSyncBatchNorm), ("GN", nn.GroupNorm)],
)
def test_norm_names(norm, kind):
    cfg = make_cfg("c4", NORM=norm)
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    model = build_backbone(cfg)
    types = {type(m) for m in model.modules()}
    assert kind in types and nn.BatchNorm2d not in types
    if norm == "GN":  # 16-wide stem: gcd(32, 16) groups
        assert model.stages.xif0_0.bn.num_groups == 16


def test_norm_translation_is_the_layers_with_detectron2_classes():
    """The layers' resolve_norm, with detectron2's classes for naiveSyncBN and FrozenBN."""
    assert resolve_norm("naiveSyncBN", det.D2_NORMS) is NaiveSyncBatchNorm
    assert resolve_norm("FrozenBN", det.D2_NORMS) is FrozenBatchNorm2d
    assert resolve_norm("SyncBN", det.D2_NORMS) == "sync_bn"
    with pytest.raises(ValueError, match="naiveSyncBN.*detectron2"):
        resolve_norm("naiveSyncBN")  # without detectron2's class: named, not built
    with pytest.raises(ValueError, match="freshly initialised heads"):
        resolve_norm("FrozenBN", det.D2_NORMS, trainable=True)
    # freezing keeps eps and the statistics, and carries no batch counter (whichever
    # detectron2: newer ones' convert_frozen_batchnorm copies it)
    block = nn.Sequential(NaiveSyncBatchNorm(8, eps=1e-3), nn.BatchNorm2d(8), nn.GroupNorm(4, 8))
    with torch.no_grad():
        block[0].running_mean.normal_()
        block[1].weight.normal_()
    block[0].num_batches_tracked.fill_(5)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        expected = block.eval()(x)
    frozen = freeze_norms(block, FrozenBatchNorm2d)
    assert [type(m) for m in frozen] == [FrozenBatchNorm2d, FrozenBatchNorm2d, nn.GroupNorm]
    assert frozen[0].eps == 1e-3
    assert set(frozen.state_dict()) == {
        f"{i}.{k}" for i in (0, 1) for k in ("weight", "bias", "running_mean", "running_var")
    } | {"2.weight", "2.bias"}
    torch.testing.assert_close(frozen.train()(x), expected)  # eval statistics, in training too


def test_heads_are_configurable():
    """The light heads take explicit arguments as well as (cfg, input_shape)."""
    rpn = det.FBNetV2LightRPNHead(in_channels=32, num_anchors=3, norm="GN")
    logits, deltas = rpn([torch.randn(1, 32, 8, 8), torch.randn(1, 32, 4, 4)])
    assert [tuple(t.shape) for t in logits] == [(1, 3, 8, 8), (1, 3, 4, 4)]
    assert tuple(deltas[0].shape) == (1, 12, 8, 8)
    assert type(rpn.conv[0].bn) is nn.GroupNorm
    rows = [{"op": "ir_k3", "out_channels": 16, "stride": 2, "expansion": 2}]
    pooled = ShapeSpec(channels=32, height=7, width=7)
    box = det.FBNetV2BlockBoxHead(input_shape=pooled, blocks=rows)
    assert box.output_shape.channels == 16 and list(box.stages._modules) == ["xif0_0"]
    assert tuple(box(torch.randn(5, 32, 7, 7)).shape) == (5, 16)
    with pytest.raises(det.DetectionConfigError, match="freshly initialised heads"):
        det.FBNetV2LightRPNHead(in_channels=8, num_anchors=1, norm="FrozenBN")
    cfg = make_cfg("fpn", HEAD_NORM="naiveSyncBN")
    shape = [ShapeSpec(channels=256, stride=s) for s in (4, 8, 16, 32, 64)]
    from_cfg = det.FBNetV2LightRPNHead(cfg, shape)
    assert type(from_cfg.conv[1].bn) is NaiveSyncBatchNorm
    assert from_cfg.objectness_logits.out_channels == 3  # detectron2's 3 aspect ratios


# --------------------------------------------------------------------------- full models


@pytest.mark.parametrize("backbone", ["fpn", "c4", "retinanet"])
def test_full_detectron2_model_infers_and_trains(backbone):
    cfg = make_cfg(backbone)
    model = build_model(cfg)
    if backbone == "fpn":
        assert isinstance(model.proposal_generator.rpn_head, det.FBNetV2LightRPNHead)
        assert isinstance(model.roi_heads.box_head, det.FBNetV2BlockBoxHead)
        dw = model.proposal_generator.rpn_head.conv[0].conv
        assert dw.groups == dw.in_channels == 256 and dw.kernel_size == (3, 3)
    if backbone == "c4":
        assert isinstance(model.roi_heads, det.FBNetV2C4ROIHeads)
        assert list(model.roi_heads.stages._modules) == [f"xif5_{i}" for i in range(4)]
    model.eval()
    with torch.no_grad():
        (result,) = model(batch())
    instances = result["instances"]
    assert instances.image_size == (150, 190)
    assert len(instances) > 0 and instances.pred_boxes.tensor.shape[1] == 4

    model.train()
    with EventStorage(0):
        losses = model(batch())
    expected = {"loss_cls", "loss_box_reg"}
    if backbone != "retinanet":
        expected |= {"loss_rpn_cls", "loss_rpn_loc"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    stages = "backbone.stages." if backbone == "c4" else "backbone.bottom_up.stages."
    assert grads[stages + "xif0_0.conv.weight"] is None  # FREEZE_AT 2 (detectron2's default)
    assert grads[stages + "xif2_0.pw.conv.weight"].abs().sum() > 0
    if backbone == "c4":
        assert grads["roi_heads.stages.xif5_0.pw.conv.weight"].abs().sum() > 0


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("backbone", ["fpn", "c4"])
def test_classification_checkpoint_loads_into_every_fbnet_stage(backbone, tmp_path, caplog):
    source = official_checkpoint(tmp_path / "model.pth")
    model = build_model(make_cfg(backbone))
    checkpointer = det.FBNetV2DetectionCheckpointer(model)
    with caplog.at_level("INFO"):
        checkpointer.load(str(tmp_path / "model.pth"))
    report = checkpointer.conversion_report
    state = model.state_dict()
    holders = ["backbone.stages."] if backbone == "c4" else ["backbone.bottom_up.stages."]
    if backbone == "c4":
        holders.append("roi_heads.stages.")
    stage_keys = [k for k in state if k.startswith(tuple(holders))]
    assert sorted(report.loaded) == sorted(stage_keys)
    for key in stage_keys:  # the values too
        src = "backbone.stages." + key.split("stages.", 1)[1]
        torch.testing.assert_close(state[key], source[src], msg=key)
    assert sorted(report.fresh) == sorted(set(state) - set(stage_keys))
    assert any(k.startswith("proposal_generator.rpn_head.") for k in report.fresh)
    assert any(k.startswith("roi_heads.box_predictor.") for k in report.fresh)
    assert sorted(report.unused) == sorted(
        k for k in source if k.startswith(("head.", "backbone.stages.xif6_"))
    )
    if backbone == "c4":  # the box head's copy of the stride-32 stage
        assert report.targets["roi_heads.stages"] == [f"xif5_{i}" for i in range(4)]
        assert "xif5_0" not in report.targets["backbone.stages"]
    log = caplog.text
    assert f"Loaded {len(stage_keys)} keys" in log and "Initialised fresh" in log
    assert "proposal_generator.rpn_head" in log and "head.conv (2)" in log


def test_frozen_bn_model_and_the_helper(tmp_path):
    source = official_checkpoint(tmp_path / "model.pth")
    model = build_model(make_cfg("c4", NORM="FrozenBN"))
    report = det.load_classification_weights(model, str(tmp_path / "model.pth"))
    assert report.loaded and not any(k.endswith("num_batches_tracked") for k in report.loaded)
    bn = model.roi_heads.stages.xif5_0.pw.bn
    assert type(bn) is FrozenBatchNorm2d
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert all(
        set(m.state_dict()) == {"weight", "bias", "running_mean", "running_var"} for m in frozen
    )
    torch.testing.assert_close(bn.running_var, source["backbone.stages.xif5_0.pw.bn.running_var"])
    # a state dict works too, and a bare backbone's keys (stages.*)
    bare = {k[len("backbone.") :]: v for k, v in source.items() if k.startswith("backbone.")}
    again = det.load_classification_weights(model, bare)
    assert sorted(again.loaded) == sorted(report.loaded)


def test_zoo_url_scheme_through_a_user_catalog(tmp_path, no_network):
    official_checkpoint(tmp_path / "model.pth")
    catalog = tmp_path / "zoo"
    arch = model_zoo.get_arch_def("FBNetV2_F4")
    publish_model("det_test_fbnetv2_f4", arch, str(tmp_path / "model.pth"), str(catalog))
    model_zoo.add_catalog(catalog)
    try:
        cfg = make_cfg("fpn", arch="det_test_fbnetv2_f4")  # the arch by its zoo name too
        cfg.MODEL.WEIGHTS = "fbnet_zoo://det_test_fbnetv2_f4"
        model = build_model(cfg)
        checkpointer = det.FBNetV2DetectionCheckpointer(model)
        checkpointer.load(cfg.MODEL.WEIGHTS)
        loaded = checkpointer.conversion_report.loaded
        assert len(loaded) == len([k for k in model.state_dict() if ".bottom_up.stages." in k])
        with pytest.raises(CheckpointError, match="Unknown model 'nope'"):
            checkpointer.load("fbnet_zoo://nope")
        with pytest.raises(CheckpointError, match="no published weights"):
            checkpointer.load("fbnet_zoo://FBNetV2_F0")
    finally:
        model_zoo.remove_catalog(catalog)
    assert no_network == []


def test_a_failed_load_leaves_the_checkpointer_usable(tmp_path):
    """detectron2 after 0.6 asserts at the start of a load that no load is under way, and
    resets that state only after a successful load: a failed load must not break the next."""
    official_checkpoint(tmp_path / "f4.pth")
    official_checkpoint(tmp_path / "f1.pth", arch="FBNetV2_F1")
    model = build_model(make_cfg("fpn"))
    checkpointer = det.FBNetV2DetectionCheckpointer(model)
    with pytest.raises(CheckpointError, match="Unknown model 'nope'"):
        checkpointer.load("fbnet_zoo://nope")
    with pytest.raises(CheckpointError, match="does not fit the FBNet stages"):
        checkpointer.load(str(tmp_path / "f1.pth"))
    checkpointer.load(str(tmp_path / "f4.pth"))
    assert checkpointer.conversion_report.loaded
    assert getattr(checkpointer, "_parsed_url_during_load", None) is None


def test_checkpoint_of_another_arch_is_a_clear_mismatch(tmp_path):
    official_checkpoint(tmp_path / "f1.pth", arch="FBNetV2_F1")
    model = build_model(make_cfg("fpn", arch="FBNetV2_F4"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        det.FBNetV2DetectionCheckpointer(model).load(str(tmp_path / "f1.pth"))
    message = str(info.value)
    assert "does not fit the FBNet stages" in message and "'FBNetV2_F4'" in message
    assert "mis-shaped keys" in message and "missing keys" in message
    assert "another arch" in message and "Traceback" not in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_detection_checkpoints_still_load_as_usual(tmp_path):
    model = build_model(make_cfg("c4"))
    torch.save({"model": model.state_dict(), "iteration": 7}, tmp_path / "model_final.pth")
    other = build_model(make_cfg("c4"))
    checkpointer = det.FBNetV2DetectionCheckpointer(other)
    extra = checkpointer.load(str(tmp_path / "model_final.pth"))
    assert extra["iteration"] == 7 and checkpointer.conversion_report is None
    key = "roi_heads.box_predictor.cls_score.weight"
    torch.testing.assert_close(other.state_dict()[key], model.state_dict()[key])


def test_load_weights_takes_weights_that_fit(tmp_path):
    """load_weights (MODEL.WEIGHTS): a detector's own weights load whole; backbone-only
    weights fit too (the heads start fresh: the fine-tuning start), and so do weights of a
    model with other frozen stages (batch counters are left out)."""
    model = build_model(make_cfg("fpn", NORM="BN"))
    model.backbone.bottom_up.freeze(0)
    state = model.state_dict()
    torch.save({"model": state}, tmp_path / "full.pth")
    trunk = {k: v for k, v in state.items() if k.startswith("backbone.bottom_up.")}
    torch.save({"model": trunk}, tmp_path / "trunk.pth")
    other = build_model(make_cfg("fpn"))  # FREEZE_AT 2: the stem and stage1 without counters
    checkpointer = det.FBNetV2DetectionCheckpointer(other)
    checkpointer.load_weights(str(tmp_path / "full.pth"))
    fit = checkpointer.weights_fit
    assert fit.fits and not (fit.missing or fit.misshaped or fit.unexpected)
    assert sorted(fit.loaded) == sorted(k for k in other.state_dict() if "num_batches" not in k)
    checkpointer.load_weights(str(tmp_path / "trunk.pth"))
    fit = checkpointer.weights_fit
    assert fit.fits and fit.missing and not fit.unfilled_stage_keys
    assert all(
        k.startswith(("backbone.fpn", "proposal_generator.", "roi_heads.")) for k in fit.missing
    )


def test_load_weights_refuses_weights_that_do_not_fit(tmp_path):
    """Weights of another class count (a box predictor of another shape), of another
    detector (C4 in FPN), or without the FBNet stages, are a CheckpointError with the counts
    and the first keys; allow_partial loads what fits (a new head on a trained trunk)."""
    trained = build_model(make_cfg("fpn"))
    torch.save({"model": trained.state_dict()}, tmp_path / "fpn3.pth")
    torch.save({"model": build_model(make_cfg("c4")).state_dict()}, tmp_path / "c4.pth")
    heads = {k: v for k, v in trained.state_dict().items() if not k.startswith("backbone.")}
    torch.save({"model": heads}, tmp_path / "heads.pth")
    cfg = make_cfg("fpn")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5
    model = build_model(cfg)
    checkpointer = det.FBNetV2DetectionCheckpointer(model)
    with pytest.raises(CheckpointError) as info:
        checkpointer.load_weights(str(tmp_path / "fpn3.pth"))
    first, *keys = str(info.value).splitlines()
    assert "do not fit the model: 4 keys of another shape (" in first
    assert "set MODEL.ALLOW_PARTIAL_WEIGHTS True" in first
    assert "  keys of another shape (4):" in keys
    assert any(
        k.startswith("    roi_heads.box_predictor.cls_score.weight: checkpoint (4,") for k in keys
    )
    checkpointer.load_weights(str(tmp_path / "fpn3.pth"), allow_partial=True)
    fit = checkpointer.weights_fit
    assert not fit.fits and not fit.missing and not fit.unexpected
    assert {k for k, _, _ in fit.misshaped} == {
        f"roi_heads.box_predictor.{layer}.{p}"
        for layer in ("cls_score", "bbox_pred")
        for p in ("weight", "bias")
    }
    key = "backbone.bottom_up.stages.xif2_0.pwl.conv.weight"
    torch.testing.assert_close(model.state_dict()[key], trained.state_dict()[key])
    for name in ("c4.pth", "heads.pth"):
        with pytest.raises(CheckpointError, match="keys of the model's FBNet stages not filled"):
            checkpointer.load_weights(str(tmp_path / name))
    assert getattr(checkpointer, "_parsed_url_during_load", None) is None


# --------------------------------------------------------------------------- errors


def test_unknown_arch_and_registry_names_are_listed():
    with pytest.raises(ArchConfigError, match="ARCH 'FBNetV2_F44'.*Did you mean 'FBNetV2_F4'"):
        build_backbone(make_cfg("fpn", arch="FBNetV2_F44"))
    cfg = make_cfg("fpn")
    cfg.MODEL.BACKBONE.NAME = "build_fbnetv2_fnp_backbone"
    with pytest.raises(det.DetectionConfigError) as info:
        det.check_registered_names(cfg)
    message = str(info.value)
    assert "Did you mean 'build_fbnetv2_fpn_backbone'" in message
    assert all(name in message for name in det.REGISTERED_NAMES["BACKBONE"])
    cfg = make_cfg("c4")
    cfg.MODEL.RPN.HEAD_NAME = "LightRPNHead"
    with pytest.raises(det.DetectionConfigError, match="MODEL.RPN.HEAD_NAME.*FBNetV2LightRPNHead"):
        det.check_registered_names(cfg)
    for backbone in ("fpn", "c4", "retinanet"):
        det.check_registered_names(make_cfg(backbone))
    with pytest.raises(ArchConfigError, match="add_fbnetv2_config"):
        resolve_arch(get_cfg())


@pytest.mark.parametrize(
    "backbone, key, value, match",
    [
        ("c4", "OUT_FEATURES", ["stage6"], r"Unknown backbone feature.*stage5 \(stride 32"),
        ("fpn", "OUT_FEATURES", ["res2", "res3"], r"Unknown backbone feature.*stage0 \(stride 2"),
        ("c4", "OUT_FEATURES", ["stage3", "stage4"], "C4 backbone gives one feature"),
        ("fpn", "NORM", "LayerNorm", "MODEL.MOBILE_CV_NAS.NORM: Unknown norm 'LayerNorm'"),
        ("fpn", "HEAD_NORM", "FrozenBN", "freshly initialised heads"),
        ("fpn", "BOX_HEAD_BLOCKS", [{"op": "ir_k3_hz", "out_channels": 8}], "Did you mean"),
    ],
)
def test_bad_features_and_norms_are_named(backbone, key, value, match):
    cfg = make_cfg(backbone, **{key: value})
    with pytest.raises(det.DetectionConfigError, match=match):
        build_model(cfg)


def test_heads_reading_missing_features_are_refused():
    cfg = make_cfg("c4")
    cfg.MODEL.RPN.IN_FEATURES = ["res4"]  # detectron2's default, a ResNet name
    with pytest.raises(det.DetectionConfigError, match=r"MODEL.RPN.IN_FEATURES.*\['stage4'\]"):
        build_model(cfg)
    cfg = make_cfg("fpn")
    cfg.MODEL.FPN.IN_FEATURES = ["stage2", "stage3"]
    cfg.MODEL.MOBILE_CV_NAS.OUT_FEATURES = ["stage3", "stage4"]
    with pytest.raises(det.DetectionConfigError, match="differ"):
        build_model(cfg)


def test_a_colour_arch_on_grayscale_images_is_refused():
    cfg = make_cfg("fpn")  # FBNetV2_F4: 3-channel images
    cfg.INPUT.FORMAT = "L"
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [127.0], [64.0]
    with pytest.raises(det.DetectionConfigError, match="3-channel images.*1 channels"):
        build_model(cfg)


def test_a_grayscale_arch_works_on_grayscale_and_on_colour_images():
    arch = model_zoo.get_arch_def("FBNetV2_F4").to_dict()
    arch["in_channels"] = 1  # e.g. a Fashion-MNIST model from a user catalog
    cfg = make_cfg("fpn", arch="")
    cfg.MODEL.MOBILE_CV_NAS.ARCH_DEF = type(cfg)(arch)
    assert build_model(cfg).backbone.bottom_up.in_channels == 3  # RGB: a 3-channel stem
    cfg.INPUT.FORMAT = "L"  # grayscale detection keeps the 1-channel stem
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [127.0], [64.0]
    out = build_model(cfg).backbone.bottom_up(torch.randn(1, 1, 64, 64))
    assert out["stage5"].shape == (1, 224, 2, 2)


def test_a_published_grayscale_model_is_a_colour_backbone_by_name(tmp_path, no_network):
    """A model searched and trained on Fashion-MNIST (1 channel), published to a user catalog,
    is used by name on RGB images: its stem weights are spread over R, G, B (w / 3), so on a
    gray image (R = G = B) the stem computes what the 1-channel model computes."""
    arch = model_zoo.get_arch_def("FBNetV2_F1")
    arch.in_channels = 1
    classifier = build_classifier(arch)
    with torch.no_grad():
        for p in classifier.parameters():
            p.normal_()
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "gray.pth")
    catalog = tmp_path / "zoo"
    publish_model("det_test_gray_f1", arch, str(tmp_path / "gray.pth"), str(catalog))
    model_zoo.add_catalog(catalog)
    try:
        cfg = make_cfg("fpn", arch="det_test_gray_f1")
        model = build_model(cfg).eval()
        checkpointer = det.FBNetV2DetectionCheckpointer(model)
        checkpointer.load("fbnet_zoo://det_test_gray_f1")
        backbone_keys = [k for k in model.state_dict() if ".bottom_up.stages." in k]
        assert len(checkpointer.conversion_report.loaded) == len(backbone_keys)
    finally:
        model_zoo.remove_catalog(catalog)
    gray = torch.randn(1, 1, 64, 64)
    stem_gray = classifier.eval().backbone.stages.xif0_0(gray)
    stem_rgb = model.backbone.bottom_up.stages.xif0_0(gray.expand(1, 3, 64, 64))
    torch.testing.assert_close(stem_rgb, stem_gray, rtol=1e-5, atol=1e-5)
    assert no_network == []


def test_a_checkpoint_pickling_objects_is_refused_clearly(tmp_path):
    """detectron2's checkpointer reads with weights_only: a file that pickles other objects
    is refused with the file named and the way to re-save it, not torch's unpickling error."""
    state = official_checkpoint(tmp_path / "plain.pth")
    path = tmp_path / "with_objects.pth"
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, path)
    model = build_model(make_cfg("fpn"))
    with pytest.raises(CheckpointError, match="pickles Python objects besides tensors") as info:
        det.FBNetV2DetectionCheckpointer(model).load(str(path))
    assert str(path) in str(info.value) and "trusted=True" in str(info.value)
