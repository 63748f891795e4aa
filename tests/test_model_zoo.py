"""Models by name: catalog, aliases, backbone features, and official-format checkpoints."""

import copy
import hashlib

import pytest
import torch

from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import CheckpointError, load_checkpoint
from mobile_cv_nas.model_zoo import UnknownModelError

# FBNetV2_F1: (channels, stride) of the last block of each stage.
F1_FEATURES = {
    "stage0": (8, 2),
    "stage1": (8, 2),
    "stage2": (24, 4),
    "stage3": (24, 8),
    "stage4": (80, 16),
    "stage5": (224, 32),
    "stage6": (1600, 32),  # ir_pool_hs: globally pooled
}


def randomize_(model):
    """Random weights and BN statistics everywhere, so a wrong load cannot go unnoticed."""
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


@pytest.fixture(scope="module")
def source_model():
    return randomize_(model_zoo.get("FBNetV2_F1")).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))


def official_file(path, model, key="model_ema"):
    """Write `model` as the official model.pth: DDP `module.` prefix, EMA or plain weights."""
    weights = {"module." + k: v.clone() for k, v in model.state_dict().items()}
    data = (
        {"model_ema": weights, "state_dict": None}
        if key == "model_ema"
        else {"state_dict": weights}
    )
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def ema_file(tmp_path_factory, source_model):
    return official_file(tmp_path_factory.mktemp("ckpt") / "model.pth", source_model)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- catalog


def test_list_models():
    names = model_zoo.list_models()
    for name in [
        "FBNetV2_F1",
        "FBNetV2_F2",
        "FBNetV2_F3",
        "FBNetV2_F4",
        "FBNetV2_L1",
        "FBNetV2_L2",
    ]:
        assert name in names
    assert "FBNetV2_F5" not in names  # an alias, not a model
    assert names == sorted(names)


def test_alias_f5_is_l2_at_256():
    info = model_zoo.get_model_info("FBNetV2_F5")
    assert info["name"] == "FBNetV2_L2" and info["resolution"] == 256
    model = model_zoo.get("FBNetV2_F5")
    assert model.model_info["name"] == "FBNetV2_L2"
    assert model.arch_def.input_size == 256
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    assert shapes == [tuple(v.shape) for v in model_zoo.get("FBNetV2_L1").state_dict().values()]
    assert model_zoo.get_model_info("FBNet_a")["name"] == "fbnet_a"


@pytest.mark.parametrize(
    "asked, canonical",
    [
        ("fbnetv2_f4", "FBNetV2_F4"),
        ("FBNETV2_F1", "FBNetV2_F1"),
        ("fbnetv2_f5", "FBNetV2_L2"),
        ("FBNET_C", "fbnet_c"),
        ("fbnet_a", "fbnet_a"),
    ],
)
def test_names_are_case_insensitive(asked, canonical):
    assert model_zoo.get_model_info(asked)["name"] == canonical
    assert model_zoo.get_arch_def(asked).name == canonical
    assert model_zoo.get_model_info(asked) == model_zoo.get_model_info(canonical)


def test_case_insensitive_get_builds_the_canonical_model():
    model = model_zoo.get("fbnetv2_f1")
    assert model.model_info["name"] == "FBNetV2_F1"
    assert [tuple(v.shape) for v in model.state_dict().values()] == [
        tuple(v.shape) for v in model_zoo.get("FBNetV2_F1").state_dict().values()
    ]


def test_model_info():
    info = model_zoo.get_model_info("FBNetV2_F4")
    assert info["resolution"] == 224 and info["resize"] == 251
    assert info["weights"]["url"].startswith("https://") and info["weights"]["url"].endswith(
        "model.pth"
    )
    assert info["mean"] == [0.485, 0.456, 0.406] and info["std"] == [0.229, 0.224, 0.225]
    assert info["metrics"]["top1"] == pytest.approx(75.818)


def test_unknown_lower_case_name_suggests_the_catalog_spelling():
    with pytest.raises(
        UnknownModelError, match=r"Unknown model 'fbnetv2_f44'\. Did you mean 'FBNetV2_F4'"
    ):
        model_zoo.get_model_info("fbnetv2_f44")


def test_unknown_model_lists_names_and_suggests():
    with pytest.raises(UnknownModelError) as err:
        model_zoo.get("FBNetV2_F44")
    msg = str(err.value)
    assert "Unknown model 'FBNetV2_F44'" in msg
    assert "Did you mean" in msg and "'FBNetV2_F4'" in msg
    for name in model_zoo.list_models():
        assert name in msg
    assert isinstance(err.value, KeyError)


def test_no_published_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="no published weights"):
        model_zoo.get("FBNetV2_F0", pretrained=True)


# --------------------------------------------------------------------------- building


@torch.no_grad()
def test_classifier_output_shape(image):
    model = model_zoo.get("FBNetV2_F1").eval()
    assert model(image).shape == (2, 1000)


@torch.no_grad()
def test_features_only_strides_and_channels(image):
    backbone = model_zoo.get("FBNetV2_F1", features_only=True).eval()
    assert not hasattr(backbone, "head")
    feats = backbone(image)
    assert list(feats) == list(F1_FEATURES)
    for name, (channels, stride) in F1_FEATURES.items():
        assert backbone.feature_channels[name] == channels
        assert backbone.feature_strides[name] == stride
        x = feats[name]
        assert x.shape[:2] == (2, channels), name
        expected_hw = (1, 1) if name == "stage6" else (64 // stride, 64 // stride)
        assert tuple(x.shape[2:]) == expected_hw, name


@torch.no_grad()
def test_out_features_subset(image):
    backbone = model_zoo.get("FBNetV2_F4", out_features=["stage3", "stage5"]).eval()
    feats = backbone(image)
    assert list(feats) == ["stage3", "stage5"]
    assert feats["stage3"].shape == (2, backbone.feature_channels["stage3"], 8, 8)
    assert feats["stage5"].shape == (2, backbone.feature_channels["stage5"], 2, 2)
    with pytest.raises(ValueError, match="stage9"):
        model_zoo.get("FBNetV2_F4", out_features=["stage9"])


@torch.no_grad()
def test_num_classes_override(image):
    model = model_zoo.get("FBNetV2_F1", num_classes=10).eval()
    assert model.head.conv.weight.shape == (10, 1600, 1, 1)
    assert model(image).shape == (2, 10)


# --------------------------------------------------------------------------- checkpoints


@torch.no_grad()
@pytest.mark.parametrize("form", ["path", "file_url"])
def test_official_ema_checkpoint_round_trip(form, ema_file, source_model, image):
    weights = str(ema_file) if form == "path" else f"file://{ema_file}"
    model = model_zoo.get("FBNetV2_F1", weights=weights).eval()
    assert_same_weights(model, source_model)
    assert torch.equal(model(image), source_model(image))


@torch.no_grad()
def test_official_state_dict_checkpoint_round_trip(tmp_path, source_model, image):
    path = official_file(tmp_path / "model.pth", source_model, key="state_dict")
    model = model_zoo.get("FBNetV2_F1", weights=str(path)).eval()
    assert torch.equal(model(image), source_model(image))
    fresh = model_zoo.get("FBNetV2_F1").eval()
    load_checkpoint(fresh, str(path))
    assert_same_weights(fresh, source_model)


def test_model_ema_wins_over_state_dict(tmp_path, source_model):
    other = model_zoo.get("FBNetV2_F1")
    data = {
        "model_ema": {"module." + k: v for k, v in source_model.state_dict().items()},
        "state_dict": {"module." + k: v for k, v in other.state_dict().items()},
    }
    torch.save(data, tmp_path / "model.pth")
    model = model_zoo.get("FBNetV2_F1", weights=str(tmp_path / "model.pth"))
    assert_same_weights(model, source_model)


@torch.no_grad()
def test_backbone_loads_the_classifier_file(ema_file, source_model, image):
    backbone = model_zoo.get("FBNetV2_F1", features_only=True, weights=str(ema_file)).eval()
    assert_same_weights(backbone.stages, source_model.backbone.stages)
    feats = backbone(image)
    assert torch.equal(feats["stage6"], source_model.backbone(image))
    # the new head of a num_classes override is left alone; the backbone is loaded
    model = model_zoo.get("FBNetV2_F1", num_classes=10, weights=str(ema_file)).eval()
    assert_same_weights(model.backbone, source_model.backbone)


def test_sha256_checked(ema_file, source_model, monkeypatch):
    digest = hashlib.sha256(ema_file.read_bytes()).hexdigest()
    model = model_zoo.get("FBNetV2_F1")
    load_checkpoint(model, str(ema_file), sha256=digest)
    assert_same_weights(model, source_model)
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_checkpoint(model_zoo.get("FBNetV2_F1"), str(ema_file), sha256="0" * 64)
    assert str(ema_file) in str(err.value)

    # the catalog's sha256 is enforced for pretrained=True
    catalog = model_zoo._catalog()
    patched = dict(catalog, models=dict(catalog["models"]))
    patched["models"]["FBNetV2_F1"] = dict(
        catalog["models"]["FBNetV2_F1"], weights={"url": f"file://{ema_file}", "sha256": "f" * 64}
    )
    monkeypatch.setattr(model_zoo, "_catalog", lambda: patched)
    with pytest.raises(CheckpointError, match="sha256"):
        model_zoo.get("FBNetV2_F1", pretrained=True)
    patched["models"]["FBNetV2_F1"]["weights"]["sha256"] = digest
    assert_same_weights(model_zoo.get("FBNetV2_F1", pretrained=True), source_model)


def _place_in_cache(cache_dir, url, file):
    """Put `file` where an URL is cached: <cache_dir>/<host>/<url path>."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    target = cache_dir / parsed.hostname / parsed.path.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(file.read_bytes())
    return target


@torch.no_grad()
def test_cached_http_url_loads_offline(tmp_path, ema_file, source_model, image, no_network):
    url = model_zoo.get_model_info("FBNetV2_F1")["weights"]["url"]
    target = _place_in_cache(tmp_path, url, ema_file)
    assert str(target).startswith(str(tmp_path / "dl.fbaipublicfiles.com" / "fbnet" / "models"))
    model = model_zoo.get("FBNetV2_F1", pretrained=True, cache_dir=str(tmp_path)).eval()
    assert torch.equal(model(image), source_model(image))
    # an explicit http weights URL resolves through the same cache
    model = model_zoo.get("FBNetV2_F1", weights=url, cache_dir=str(tmp_path))
    assert_same_weights(model, source_model)
    assert no_network == []


def test_cache_dir_from_environment(tmp_path, ema_file, source_model, monkeypatch, no_network):
    url = model_zoo.get_model_info("FBNetV2_F1")["weights"]["url"]
    _place_in_cache(tmp_path, url, ema_file)
    monkeypatch.setenv("MOBILE_CV_NAS_CACHE", str(tmp_path))
    assert_same_weights(model_zoo.get("FBNetV2_F1", pretrained=True), source_model)
    assert no_network == []


def test_uncached_url_offline_is_a_clear_error(tmp_path, no_network):
    url = "https://example.invalid/fbnet/models/missing/model.pth"
    with pytest.raises(CheckpointError, match="Could not fetch checkpoint") as err:
        model_zoo.get("FBNetV2_F1", weights=url, cache_dir=str(tmp_path))
    msg = str(err.value)
    assert url in msg
    assert str(tmp_path / "example.invalid" / "fbnet" / "models" / "missing" / "model.pth") in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------- frozen BatchNorm


def _freeze_one_bn(model):
    """`model` with its stem BatchNorm2d swapped for torchvision's FrozenBatchNorm2d (same
    weights and statistics, no num_batches_tracked buffer)."""
    from torchvision.ops import FrozenBatchNorm2d

    stem = model.backbone.stages.xif0_0
    bn = stem.bn
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(frozen, name).copy_(getattr(bn, name).detach())
    stem.bn = frozen
    return model


KEY = "backbone.stages.xif0_0.bn.num_batches_tracked"


@torch.no_grad()
def test_frozen_bn_model_loads_an_official_checkpoint(ema_file, source_model, image):
    model = _freeze_one_bn(model_zoo.get("FBNetV2_F1")).eval()
    assert KEY not in model.state_dict()
    load_checkpoint(model, str(ema_file))
    for k, v in model.state_dict().items():
        assert torch.equal(v, source_model.state_dict()[k]), k
    assert torch.equal(model(image), source_model(image))


@torch.no_grad()
def test_checkpoint_of_a_frozen_bn_model_loads_into_batchnorm(tmp_path, source_model, image):
    frozen = _freeze_one_bn(copy.deepcopy(source_model))
    path = official_file(tmp_path / "model.pth", frozen)
    assert "module." + KEY not in torch.load(path)["model_ema"]
    model = model_zoo.get("FBNetV2_F1").eval()
    model.state_dict()[KEY].fill_(7)
    load_checkpoint(model, str(path))
    assert int(model.state_dict()[KEY]) == 7  # the model keeps its own counter
    assert torch.equal(model(image), source_model(image))


def test_only_the_bn_counter_is_optional(tmp_path, source_model):
    state = {"module." + k: v for k, v in source_model.state_dict().items()}
    state.pop("module." + KEY.replace("num_batches_tracked", "running_var"))
    state["module.backbone.stages.xif9_0.bn.num_batches_tracked"] = torch.tensor(3)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model_zoo.get("FBNetV2_F1"), {"model_ema": state})
    msg = str(err.value)
    assert "missing keys (1):\n    backbone.stages.xif0_0.bn.running_var" in msg
    assert "unexpected keys (1):\n    backbone.stages.xif9_0.bn.num_batches_tracked" in msg


def test_info_names_the_catalog_it_is_from():
    from mobile_cv_nas.data_files import model_zoo_dir

    assert model_zoo.get_model_info("FBNetV2_F5")["catalog"] == str(model_zoo_dir())
    assert model_zoo.catalog_dirs()[0] == str(model_zoo_dir())
