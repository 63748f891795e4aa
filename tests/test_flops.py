"""FLOPs/params under the published convention reproduce the official model-info figures."""

import json

import pytest
import torch

from mobile_cv_nas import model_zoo
from mobile_cv_nas.flops import count_flops, count_weight_params

REL_TOL = 1e-3  # 0.1 %

ZOO_WITH_METRICS = [n for n in model_zoo.list_models() if model_zoo.get_model_info(n).get("metrics")]


@pytest.fixture(scope="module")
def reports():
    """count_flops of every zoo model with metrics, at its resolution (computed once)."""
    out = {}
    for name in ZOO_WITH_METRICS:
        model = model_zoo.get(name)
        out[name] = count_flops(model, model.model_info["resolution"])
    return out


@pytest.fixture(scope="module")
def reference_entries(shared_dir):
    """The authoritative (fbnet_v2 loader) model-info entries, by name."""
    with open(shared_dir / "model_zoo_reference.json") as f:
        entries = json.load(f)["entries"]
    return {e["name"]: e for e in entries if "fbnet_v2" in e["source_file"]}


def close(a, b, tol=REL_TOL):
    return abs(a - b) <= tol * abs(b)


def test_zoo_models_with_metrics():
    expected = {"FBNetV2_F1", "FBNetV2_F2", "FBNetV2_F3", "FBNetV2_F4", "FBNetV2_L1", "FBNetV2_L2"}
    assert expected | {"fbnet_a", "fbnet_b", "fbnet_c"} == set(ZOO_WITH_METRICS)


@pytest.mark.parametrize("name", ZOO_WITH_METRICS)
def test_flops_match_published_reference(name, reports, reference_entries):
    ref = reference_entries[name]
    report = reports[name]
    assert close(report.flops / 1e6, ref["flops_m"]), (report.flops / 1e6, ref["flops_m"])
    assert close(report.params / 1e6, ref["params_m"]), (report.params / 1e6, ref["params_m"])
    # fvcore's default total also counts BatchNorm, so it is strictly larger.
    assert report.fvcore_total > report.flops


@pytest.mark.parametrize("name", ZOO_WITH_METRICS)
def test_flops_match_catalog_metrics(name, reports):
    metrics = model_zoo.get_model_info(name)["metrics"]
    report = reports[name]
    assert close(report.mflops, metrics["flops_m"]), (report.mflops, metrics["flops_m"])
    assert close(report.mparams, metrics["params_m"]), (report.mparams, metrics["params_m"])


@pytest.mark.parametrize("name", ZOO_WITH_METRICS)
def test_catalog_matches_reference_record(name, reference_entries):
    """The catalog's metadata is the official record (fbnet_v2 loader entries)."""
    info, ref = model_zoo.get_model_info(name), reference_entries[name]
    assert info["resolution"] == ref["resolution"]
    assert info["resize"] == ref["resize"]
    assert info["weights"]["url"] == ref["model_path"]
    assert info["metrics"]["top1"] == pytest.approx(ref["top_1_accuracy"], abs=1e-3)
    assert info["metrics"]["top5"] == pytest.approx(ref["top_5_accuracy"], abs=1e-3)


def test_count_flops_defaults_to_model_resolution(reports):
    model = model_zoo.get("FBNetV2_F1")
    model.train()
    report = count_flops(model)  # arch-def input_size = catalog resolution (128)
    assert report.flops == reports["FBNetV2_F1"].flops
    assert model.training, "count_flops must restore the training mode"
    assert report.params == count_weight_params(model)
    # an explicit (h, w) and a tensor input give the same count
    assert count_flops(model, (128, 128)).flops == report.flops
    assert count_flops(model, torch.zeros(1, 3, 128, 128)).flops == report.flops


def test_flops_scale_with_resolution(reports):
    # F1 and F2 share one arch def: same params, FLOPs grow with the input size.
    f1, f2 = reports["FBNetV2_F1"], reports["FBNetV2_F2"]
    assert f1.params == f2.params
    assert f2.flops > f1.flops
    assert count_flops(model_zoo.get("FBNetV2_F1"), 160).flops == f2.flops


def test_by_module_sums_to_total(reports):
    report = reports["FBNetV2_F4"]
    assert report.by_module[""] == report.flops
    assert report.by_module["head.conv"] == 1984 * 1000  # 1x1 conv on the pooled vector
