"""FLOPs/params under the published convention reproduce the official model-info figures.

The official figures are in tests/data/model_zoo_reference.json (see tests/data/README.md). Our
counts are exact integers; the published ones are in millions, written with up to 6 decimals, so
they must agree exactly once ours is rounded to the decimals the published figure has.
"""

import json
from decimal import Decimal

import pytest
import torch

from mobile_cv_nas import model_zoo
from mobile_cv_nas.flops import count_flops, count_weight_params

ZOO_WITH_METRICS = [
    n for n in model_zoo.list_models() if model_zoo.get_model_info(n).get("metrics")
]


@pytest.fixture(scope="module")
def reports():
    """count_flops of every zoo model with metrics, at its resolution (computed once)."""
    out = {}
    for name in ZOO_WITH_METRICS:
        model = model_zoo.get(name)
        out[name] = count_flops(model, model.model_info["resolution"])
    return out


@pytest.fixture(scope="module")
def reference_entries(data_dir):
    """The official (fbnet_v2 loader) model-info records, by name."""
    with open(data_dir / "model_zoo_reference.json") as f:
        return json.load(f)["entries"]


def in_published_millions(count, published):
    """`count` in millions, rounded to as many decimals as the float `published` is written with."""
    return Decimal(count).scaleb(-6).quantize(Decimal(repr(published)))


def assert_published(count, published):
    ours = in_published_millions(count, published)
    assert ours == Decimal(repr(published)), f"{count} is {ours} M, published {published} M"


def test_published_rounding_helper():
    """The helper compares exactly: one unit in the last published decimal is a mismatch."""
    assert in_published_millions(4270288, 4.27029) == Decimal("4.27029")  # 4.270288 -> 5 decimals
    assert in_published_millions(56410560, 56.41056) == Decimal("56.41056")
    assert in_published_millions(56410570, 56.41056) != Decimal("56.41056")
    assert in_published_millions(121824000, 121.824) == Decimal("121.824")


def test_zoo_models_with_metrics(reference_entries):
    """Exactly the zoo models with an official record publish metrics (F0 has none)."""
    assert set(ZOO_WITH_METRICS) == set(reference_entries)
    assert "FBNetV2_F0" in model_zoo.list_models() and "FBNetV2_F0" not in ZOO_WITH_METRICS


@pytest.mark.parametrize("name", ZOO_WITH_METRICS)
def test_flops_match_published_reference(name, reports, reference_entries):
    """Our FLOP and param counts are the official figures, to their last published decimal."""
    ref = reference_entries[name]
    report = reports[name]
    assert_published(report.flops, ref["flops_m"])
    assert_published(report.params, ref["params_m"])
    # fvcore's default total also counts BatchNorm, so it is strictly larger.
    assert report.fvcore_total > report.flops


@pytest.mark.parametrize("name", ZOO_WITH_METRICS)
def test_flops_match_catalog_metrics(name, reports):
    """The catalog's flops_m / params_m are what count_flops gives, to their last decimal."""
    metrics = model_zoo.get_model_info(name)["metrics"]
    report = reports[name]
    assert_published(report.flops, metrics["flops_m"])
    assert_published(report.params, metrics["params_m"])
    assert report.mflops == report.flops / 1e6 and report.mparams == report.params / 1e6


@pytest.mark.parametrize("name", ZOO_WITH_METRICS)
def test_catalog_matches_reference_record(name, reference_entries):
    """The catalog's metadata is the official record (fbnet_v2 loader entries)."""
    info, ref = model_zoo.get_model_info(name), reference_entries[name]
    assert info["resolution"] == ref["resolution"]
    assert info["resize"] == ref["resize"]
    assert info["weights"]["url"] == ref["model_path"]
    assert info["metrics"]["flops_m"] == ref["flops_m"]
    assert info["metrics"]["params_m"] == ref["params_m"]
    # Same numbers; some official records carry float noise (73.03190000000001 for 73.0319).
    assert info["metrics"]["top1"] == pytest.approx(ref["top_1_accuracy"], rel=1e-12, abs=0)
    assert info["metrics"]["top5"] == pytest.approx(ref["top_5_accuracy"], rel=1e-12, abs=0)


def test_count_flops_defaults_to_model_resolution(reports):
    """Without an input, count_flops uses the model's resolution; it keeps the training mode."""
    model = model_zoo.get("FBNetV2_F1")
    res = model.model_info["resolution"]
    assert model_zoo.get_arch_def("FBNetV2_F1").input_size == res
    model.train()
    report = count_flops(model)
    assert report.flops == reports["FBNetV2_F1"].flops
    assert model.training, "count_flops must restore the training mode"
    assert report.params == count_weight_params(model)
    # an explicit (h, w) and a tensor input give the same count
    assert count_flops(model, (res, res)).flops == report.flops
    assert count_flops(model, torch.zeros(1, 3, res, res)).flops == report.flops


def test_flops_scale_with_resolution(reports):
    """F1 and F2 share one arch def: same params; F1 counted at F2's resolution gives F2's FLOPs."""
    f1, f2 = reports["FBNetV2_F1"], reports["FBNetV2_F2"]
    f1_info, f2_info = (
        model_zoo.get_model_info("FBNetV2_F1"),
        model_zoo.get_model_info("FBNetV2_F2"),
    )
    assert f1_info["arch"] == f2_info["arch"]
    assert f1.params == f2.params
    assert f2.flops > f1.flops
    assert count_flops(model_zoo.get("FBNetV2_F1"), f2_info["resolution"]).flops == f2.flops


def test_by_module_sums_to_total(reports):
    """Per-module counts nest: the root is the total, and the head is a 1x1 conv on a 1x1 map."""
    report = reports["FBNetV2_F4"]
    head = model_zoo.get("FBNetV2_F4").head.conv
    assert report.by_module[""] == report.flops
    assert report.by_module["backbone"] + report.by_module["head"] == report.flops
    assert report.by_module["head.conv"] == head.in_channels * head.out_channels
