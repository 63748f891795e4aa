"""Publishing trained models into user catalogs, and the zoo reading them."""

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import CheckpointError, build_model, load_arch_def
from mobile_cv_nas.data_files import model_zoo_dir
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.integrity import write_with_hash
from mobile_cv_nas.io import sha256sum, stage_write
from mobile_cv_nas.model_zoo import CATALOGS_ENV, CatalogError, UnknownModelError
from mobile_cv_nas.publish import PublishError, publish_model
from mobile_cv_nas.search import Supernet, derive_arch

FMNIST = {"dataset": "Fashion-MNIST", "mean": [0.2860], "std": [0.3530]}
BUILTIN_FILE = str(model_zoo_dir() / "catalog.yaml")


def tiny_arch(width=16):
    """A small grayscale arch (hand-written, in the schema)."""
    return {
        "name": "tiny_hand",
        "input_size": 28,
        "in_channels": 1,
        "width_divisor": 8,
        "num_classes": 10,
        "stages": [
            [{"op": "conv_k3_hs", "out_channels": 8, "stride": 2}],
            [{"op": "ir_k3", "out_channels": width, "stride": 2, "expansion": 2}],
            [{"op": "ir_pool_hs", "out_channels": 32, "expansion": 2}],
        ],
    }


def randomize_(model, seed=1234):
    """Random weights and BN statistics everywhere, so a wrong load cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model.eval()


def save_official(model, path, ema=True):
    """The official format: `model_ema` (or `state_dict`) with the DDP `module.` prefix."""
    weights = {"module." + k: v.clone() for k, v in model.state_dict().items()}
    data = {"state_dict": weights, "model_ema": None, "iteration": 7}
    if ema:
        data["model_ema"] = weights
    torch.save(data, path)
    return str(path)


@pytest.fixture(autouse=True)
def clean_zoo(monkeypatch):
    """No user catalogs from the environment or from other tests."""
    monkeypatch.delenv(CATALOGS_ENV, raising=False)
    yield
    for directory in list(model_zoo._added):
        model_zoo.remove_catalog(directory)


@pytest.fixture
def trained(tmp_path):
    """(arch mapping, model with random weights, its official checkpoint)."""
    arch = tiny_arch()
    model = randomize_(build_model(arch))
    return arch, model, save_official(model, tmp_path / "model_final.pth")


def image(channels=1, size=28):
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(3))


def snapshot(folder):
    """Every file under `folder` with its bytes (to tell that nothing was written)."""
    if not os.path.exists(folder):
        return None
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def write_catalog(folder, models, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(yaml.safe_dump({"models": models, **extra}))
    return folder


# --------------------------------------------------------------------------- publish + load


@torch.no_grad()
def test_publish_derived_arch_then_load_through_the_environment(tmp_path, monkeypatch):
    arch = derive_arch(Supernet("tiny", in_channels=1), name="searched")
    model = randomize_(build_model(arch))
    weights = save_official(model, tmp_path / "model_final.pth")
    zoo = tmp_path / "zoo"
    entry = publish_model(
        "fmnist_tiny", arch, weights, zoo, metrics={"top1": 91.5, "top5": 99.75}, **FMNIST
    )
    assert sorted(p.name for p in zoo.iterdir()) == ["archs", "catalog.yaml", "weights"]
    assert entry["weights"] == {"url": "weights/fmnist_tiny.pth", "sha256": sha256sum(weights)}
    assert sha256sum(zoo / "weights" / "fmnist_tiny.pth") == entry["weights"]["sha256"]
    cost = count_flops(model)
    assert entry["metrics"] == {
        "flops_m": cost.flops / 1e6,
        "params_m": cost.params / 1e6,
        "top1": 91.5,
        "top5": 99.75,
    }
    assert (entry["resolution"], entry["resize"], entry["in_channels"]) == (32, None, 1)
    assert yaml.safe_load((zoo / "catalog.yaml").read_text())["models"]["fmnist_tiny"] == entry
    written = load_arch_def(zoo / "archs" / "fmnist_tiny.yaml")
    assert written.name == "fmnist_tiny" and written.stages == arch.stages

    assert "fmnist_tiny" not in model_zoo.list_models()
    monkeypatch.setenv(CATALOGS_ENV, os.pathsep.join(["", str(zoo)]))  # read at call time
    assert "fmnist_tiny" in model_zoo.list_models() and "FBNetV2_F4" in model_zoo.list_models()
    info = model_zoo.get_model_info("FMNIST_TINY")
    assert info["name"] == "fmnist_tiny" and info["catalog"] == str(zoo.resolve())
    # the user catalog's own values, none of the built-in ImageNet defaults
    assert info["mean"] == [0.2860] and info["std"] == [0.3530] and "bn_eps" not in info
    assert info["dataset"] == "Fashion-MNIST"
    loaded = model_zoo.get("fmnist_tiny", pretrained=True).eval()
    x = image(size=32)
    assert torch.equal(loaded(x), model(x))
    assert loaded.model_info["catalog"] == str(zoo.resolve())


@torch.no_grad()
def test_add_catalog_api(trained, tmp_path):
    arch, model, weights = trained
    zoo = tmp_path / "zoo"
    publish_model("mine", arch, weights, zoo, resolution=28, resize=32, **FMNIST)
    with pytest.raises(UnknownModelError):
        model_zoo.get("mine")
    resolved = model_zoo.add_catalog(zoo)
    assert resolved == str(zoo.resolve())
    assert model_zoo.add_catalog(str(zoo / ".." / "zoo")) == resolved  # idempotent
    assert model_zoo.catalog_dirs() == [str(model_zoo_dir()), resolved]
    loaded = model_zoo.get("Mine", pretrained=True).eval()
    assert torch.equal(loaded(image()), model(image()))
    assert model_zoo.get_arch_def("mine").input_size == 28
    assert model_zoo.remove_catalog(zoo) and not model_zoo.remove_catalog(zoo)
    assert "mine" not in model_zoo.list_models()


@torch.no_grad()
def test_weights_urls_absolute_and_relative_to_the_catalog(trained, tmp_path, monkeypatch):
    arch, model, weights = trained
    zoo = tmp_path / "zoo"
    entry = publish_model("absolute", arch, weights, zoo, copy_weights=False)
    assert entry["weights"]["url"] == weights and not (zoo / "weights").exists()
    # a path relative to the catalog directory, whatever the working directory
    (zoo / "elsewhere").mkdir()
    (zoo / "elsewhere" / "w.pth").write_bytes(open(weights, "rb").read())
    entry = publish_model("relative", arch, weights, zoo, copy_weights=False, url="elsewhere/w.pth")
    assert entry["weights"]["url"] == "elsewhere/w.pth"
    with pytest.raises(PublishError, match="missing or is not the weights file"):
        publish_model("broken", arch, weights, zoo, copy_weights=False, url="nothing/here.pth")
    model_zoo.add_catalog(zoo)
    monkeypatch.chdir(tmp_path / "zoo" / "archs")
    for name in ("absolute", "relative"):
        loaded = model_zoo.get(name, pretrained=True).eval()
        assert torch.equal(loaded(image()), model(image())), name
    # the recorded sha256 pins the file: a replaced file is refused
    other = randomize_(build_model(arch), seed=5)
    save_official(other, zoo / "elsewhere" / "w.pth")
    with pytest.raises(Exception, match="sha256"):
        model_zoo.get("relative", pretrained=True)


def test_a_bare_state_dict_file_and_a_state_dict_checkpoint_publish(trained, tmp_path):
    arch, model, _ = trained
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    plain = save_official(model, tmp_path / "plain.pth", ema=False)
    zoo = tmp_path / "zoo"
    publish_model("bare", arch, str(bare), zoo)
    publish_model("plain", arch, plain, zoo)
    model_zoo.add_catalog(zoo)
    for name in ("bare", "plain"):
        loaded = model_zoo.get(name, pretrained=True)
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), (name, k)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["fbnetv2_f4", "FBNetV2_F4", "fbnetv2_F5"])
def test_builtin_names_are_refused(trained, tmp_path, name):
    arch, _, weights = trained
    zoo = tmp_path / "zoo"
    with pytest.raises(PublishError) as err:
        publish_model(name, arch, weights, zoo)
    msg = str(err.value)
    assert BUILTIN_FILE in msg and str(zoo / "catalog.yaml") in msg
    assert not zoo.exists()


def test_a_user_catalog_shadowing_a_builtin_name_is_an_error(tmp_path, monkeypatch):
    zoo = write_catalog(tmp_path / "zoo", {"FBNETV2_F4": {"arch": "x"}})
    monkeypatch.setenv(CATALOGS_ENV, str(zoo))
    with pytest.raises(CatalogError) as err:
        model_zoo.get("FBNetV2_F1")
    msg = str(err.value)
    assert BUILTIN_FILE in msg and str(zoo / "catalog.yaml") in msg and CATALOGS_ENV in msg


def test_a_name_in_two_user_catalogs_is_an_error(trained, tmp_path, monkeypatch):
    arch, _, weights = trained
    zoo_a, zoo_b = tmp_path / "a", tmp_path / "b"
    publish_model("twin", arch, weights, zoo_a)
    publish_model("TWIN", arch, weights, zoo_b)  # allowed: a is not registered yet
    file_a, file_b = str(zoo_a / "catalog.yaml"), str(zoo_b / "catalog.yaml")

    monkeypatch.setenv(CATALOGS_ENV, str(zoo_a))
    with pytest.raises(CatalogError) as err:
        model_zoo.add_catalog(zoo_b)
    assert file_a in str(err.value) and file_b in str(err.value)
    assert model_zoo.catalog_dirs() == [str(model_zoo_dir()), str(zoo_a.resolve())]
    with pytest.raises(PublishError) as err:
        publish_model("Twin", arch, weights, tmp_path / "c")
    assert file_a in str(err.value) and str(tmp_path / "c" / "catalog.yaml") in str(err.value)

    monkeypatch.setenv(CATALOGS_ENV, os.pathsep.join([str(zoo_a), str(zoo_b)]))
    with pytest.raises(CatalogError, match="unique across catalogs") as err:
        model_zoo.list_models()
    assert file_a in str(err.value) and file_b in str(err.value)


def test_weights_that_do_not_fit_are_refused_and_nothing_is_written(trained, tmp_path):
    arch, _, weights = trained
    wider = randomize_(build_model(tiny_arch(width=24)))
    wrong = save_official(wider, tmp_path / "wrong.pth")
    zoo = tmp_path / "zoo"
    with pytest.raises(PublishError, match="does not match the model"):
        publish_model("wrong", arch, wrong, zoo)
    assert not zoo.exists()
    publish_model("right", arch, weights, zoo)
    before = snapshot(zoo)
    with pytest.raises(PublishError, match="mis-shaped keys"):
        publish_model("wrong", arch, wrong, zoo)
    with pytest.raises(PublishError, match="mis-shaped keys"):
        publish_model("right", arch, wrong, zoo, overwrite=True)
    with pytest.raises(PublishError, match="does not exist"):
        publish_model("absent", arch, str(tmp_path / "absent.pth"), zoo)
    (tmp_path / "junk.pth").write_text("<html>not found</html>")
    with pytest.raises(PublishError, match="HTML"):
        publish_model("junk", arch, str(tmp_path / "junk.pth"), zoo)
    assert snapshot(zoo) == before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "has space"}, "not valid"),
        ({"name": "../escape"}, "not valid"),
        ({"name": ""}, "not valid"),
        ({"metrics": {"val_top1": 90}}, "Unknown metrics"),
        ({"metrics": {"top1": 190}}, "percentage"),
        ({"mean": [0.5, 0.5, 0.5]}, "one per input channel"),
        ({"resolution": 0}, "resolution"),
        ({"resize": -1}, "resize"),
    ],
)
def test_bad_arguments_are_refused_before_writing(trained, tmp_path, kwargs, match):
    arch, _, weights = trained
    kwargs = {"name": "ok", **kwargs}
    with pytest.raises(PublishError, match=match):
        publish_model(kwargs.pop("name"), arch, weights, tmp_path / "zoo", **kwargs)
    assert not (tmp_path / "zoo").exists()


@torch.no_grad()
def test_overwrite(trained, tmp_path, monkeypatch):
    arch, model, weights = trained
    zoo = tmp_path / "zoo"
    monkeypatch.setenv(CATALOGS_ENV, str(zoo))  # publishing into a listed, not yet made catalog
    publish_model("keep", arch, weights, zoo, metrics={"top1": 1.0})
    assert "keep" in model_zoo.list_models()
    first = publish_model("model", arch, weights, zoo, metrics={"top1": 50.0})
    assert model_zoo.get_model_info("model")["metrics"]["top1"] == 50.0  # re-read on change
    with pytest.raises(PublishError, match="already in .*overwrite=True"):
        publish_model("MODEL", arch, weights, zoo)
    newer = randomize_(build_model(arch), seed=99)
    newer_file = save_official(newer, tmp_path / "newer.pth")
    second = publish_model("Model", arch, newer_file, zoo, metrics={"top1": 60.0}, overwrite=True)
    assert second["weights"]["sha256"] != first["weights"]["sha256"]
    catalog = yaml.safe_load((zoo / "catalog.yaml").read_text())
    assert list(catalog["models"]) == ["keep", "Model"]  # the new spelling, the same place
    assert catalog["models"]["keep"]["metrics"]["top1"] == 1.0
    model_zoo.add_catalog(zoo)
    loaded = model_zoo.get("model", pretrained=True).eval()
    assert loaded.model_info["name"] == "Model"
    assert loaded.model_info["metrics"]["top1"] == 60.0
    assert torch.equal(loaded(image()), newer(image()))
    # a stray file of that name is not clobbered silently
    (zoo / "archs" / "stray.yaml").write_text("stray")
    with pytest.raises(PublishError, match="already exists"):
        publish_model("stray", arch, weights, zoo)
    publish_model("stray", arch, weights, zoo, overwrite=True)
    assert model_zoo.get_arch_def("stray").in_channels == 1


# --------------------------------------------------------------------------- catalog errors


def test_broken_user_catalogs_name_the_file_and_its_source(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "catalog.yaml").write_text("models: {x: [unclosed\n")
    monkeypatch.setenv(CATALOGS_ENV, str(bad))
    with pytest.raises(CatalogError, match="not valid YAML") as err:
        model_zoo.list_models()
    assert str(bad / "catalog.yaml") in str(err.value) and CATALOGS_ENV in str(err.value)
    monkeypatch.delenv(CATALOGS_ENV)
    with pytest.raises(CatalogError, match=r"add_catalog\(\)") as err:
        model_zoo.add_catalog(bad)
    assert str(bad / "catalog.yaml") in str(err.value)
    assert model_zoo.catalog_dirs() == [str(model_zoo_dir())]  # not added

    (bad / "catalog.yaml").write_text("models: [a, b]\n")  # the cache sees the change
    with pytest.raises(CatalogError, match="'models' must be a mapping"):
        model_zoo.add_catalog(bad)
    write_catalog(bad, {"m": {"arch": "m"}}, aliases={"alias": "nowhere"})
    with pytest.raises(CatalogError, match="alias 'alias' names 'nowhere'"):
        model_zoo.add_catalog(bad)
    monkeypatch.setenv(CATALOGS_ENV, str(tmp_path / "missing"))
    with pytest.raises(CatalogError, match="does not exist") as err:
        model_zoo.get("FBNetV2_F4")
    assert str(tmp_path / "missing") in str(err.value) and CATALOGS_ENV in str(err.value)
    # publishing into a broken catalog writes nothing
    monkeypatch.delenv(CATALOGS_ENV)
    (bad / "catalog.yaml").write_text(":\n- [")
    before = snapshot(bad)
    with pytest.raises(CatalogError, match="catalog being published into"):
        publish_model("m2", tiny_arch(), "unused.pth", bad)
    assert snapshot(bad) == before


def test_each_catalog_has_its_own_defaults_and_aliases(trained, tmp_path, monkeypatch):
    arch, _, weights = trained
    zoo = tmp_path / "zoo"
    publish_model("gray", arch, weights, zoo)
    catalog = yaml.safe_load((zoo / "catalog.yaml").read_text())
    catalog["defaults"] = {"mean": [0.5], "std": [0.25], "dataset": "MNIST"}
    catalog["aliases"] = {"grey": "gray"}
    del catalog["models"]["gray"]["mean"], catalog["models"]["gray"]["dataset"]
    (zoo / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    monkeypatch.setenv(CATALOGS_ENV, str(zoo))
    info = model_zoo.get_model_info("GREY")
    assert info["name"] == "gray" and info["mean"] == [0.5] and info["dataset"] == "MNIST"
    assert info["std"] is None  # the entry's own value wins over its catalog's defaults
    builtin = model_zoo.get_model_info("FBNetV2_F4")
    assert builtin["mean"] == [0.485, 0.456, 0.406] and builtin["dataset"] == "ImageNet 1k"


def test_empty_environment_variable_leaves_the_builtin_zoo_unchanged(monkeypatch):
    before = (model_zoo.list_models(), model_zoo.get_model_info("FBNetV2_F4"))
    monkeypatch.setenv(CATALOGS_ENV, "")
    assert (model_zoo.list_models(), model_zoo.get_model_info("FBNetV2_F4")) == before
    assert before[1]["catalog"] == str(model_zoo_dir())
    assert model_zoo.catalog_dirs() == [str(model_zoo_dir())]
    assert model_zoo.get_arch_def("fbnetv2_f5").input_size == 256


# --------------------------------------------------------------------------- integrity


def change_bytes(path, count=400):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + count] = bytes(count)
    path.write_bytes(bytes(data))


def recorded_run(folder, model):
    """A training run's folder as train_net leaves it: model_final.pth with its sha256 beside
    it, and the checkpoint last_checkpoint names."""
    folder.mkdir()
    weights = folder / "model_final.pth"
    write_with_hash(str(weights), lambda f: torch.save({"state_dict": model.state_dict()}, f))
    write_with_hash(str(folder / "checkpoint_final.pth"), lambda f: torch.save({"model": {}}, f))
    (folder / "last_checkpoint").write_text("checkpoint_final.pth")
    return weights


def test_weights_whose_bytes_changed_are_not_published(trained, tmp_path, caplog):
    arch, model, _ = trained
    weights = recorded_run(tmp_path / "run", model)
    zoo = tmp_path / "zoo"
    with caplog.at_level(logging.WARNING, logger="mobile_cv_nas.publish"):
        publish_model("intact", arch, str(weights), zoo)
    assert "sha256" not in caplog.text  # verified: no warning
    change_bytes(weights)
    before = snapshot(zoo)
    with pytest.raises(PublishError) as err:
        publish_model("changed", arch, str(weights), zoo)
    msg = str(err.value)
    assert msg.startswith("Cannot publish 'changed': ") and msg.count("\n") == 0
    assert f"{str(weights)!r} changed since it was written" in msg
    assert "Other checkpoints there: checkpoint_final.pth." in msg
    assert "rerunning its command with --resume" in msg  # writes model_final.pth again
    assert f"delete {str(weights)!r}" not in msg.lower()
    assert snapshot(zoo) == before


def test_weights_without_a_recorded_hash_are_published_with_a_warning(trained, tmp_path, caplog):
    arch, _, weights = trained  # save_official: torch.save, no sha256 beside it
    with caplog.at_level(logging.WARNING, logger="mobile_cv_nas.publish"):
        entry = publish_model("unrecorded", arch, weights, tmp_path / "zoo")
    assert f"Weights file {weights!r} has no recorded sha256" in caplog.text
    assert "pins the sha256 of the file as it is now" in caplog.text
    assert entry["weights"]["sha256"] == sha256sum(weights)


def test_a_publish_removes_what_an_interrupted_one_left(trained, tmp_path, caplog):
    arch, _, weights = trained
    zoo = tmp_path / "zoo"
    publish_model("first", arch, weights, zoo)
    strays = [
        stage_write(str(zoo / "weights" / "second.pth"), lambda f: f.write(b"half")),
        stage_write(str(zoo / "catalog.yaml"), lambda f: f.write(b"models: {}")),
    ]
    with caplog.at_level(logging.WARNING, logger="mobile_cv_nas.publish"):
        publish_model("second", arch, weights, zoo)
    assert not any(os.path.exists(p) for p in strays)
    assert f"Removed 2 temporary file(s) that an interrupted publish left in {zoo}" in caplog.text
    assert os.path.join("weights", os.path.basename(strays[0])) in caplog.text
    assert sorted(os.listdir(zoo / "weights")) == ["first.pth", "second.pth"]


def test_a_changed_local_catalog_file_is_not_called_a_corrupt_download(trained, tmp_path):
    """A local catalog file may be the only copy: a sha256 mismatch says it changed since it
    was published, never to delete it and download it again."""
    arch, _, weights = trained
    zoo = tmp_path / "zoo"
    publish_model("local", arch, weights, zoo)
    model_zoo.add_catalog(zoo)
    change_bytes(zoo / "weights" / "local.pth")
    with pytest.raises(CheckpointError) as err:
        model_zoo.get("local", pretrained=True)
    msg = str(err.value)
    assert str(zoo / "weights" / "local.pth") in msg and "changed since it was published" in msg
    assert f"recorded in {zoo / 'catalog.yaml'}" in msg and "--overwrite" in msg
    assert "delete" not in msg.lower() and "corrupt" not in msg and msg.count("\n") == 0


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli(repo_root):
    spec = importlib.util.spec_from_file_location(
        "publish_cli", repo_root / "tools/publish_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(folder, trained, **overrides):
    arch, model, _ = trained
    folder.mkdir()
    (folder / "arch.yaml").write_text(yaml.safe_dump(arch))
    save_official(model, folder / "model_final.pth")
    metrics = {
        "task": "train",
        "val_top1": 88.25,
        "val_top5": 99.5,
        "dataset": "fashion_mnist_test",
        "input": {
            "resolution": 28,
            "resize": None,
            "mean": [0.286],
            "std": [0.353],
            "in_channels": 1,
        },
        **overrides,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@torch.no_grad()
def test_cli_publishes_a_run(cli, trained, tmp_path, capsys):
    run = make_run(tmp_path / "run", trained)
    zoo = tmp_path / "zoo"
    assert cli.main(["--name", "run_model", "--catalog", str(zoo), "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"export {CATALOGS_ENV}={zoo.resolve()}" in out
    assert f"model_zoo.add_catalog({str(zoo.resolve())!r})" in out
    entry = yaml.safe_load((zoo / "catalog.yaml").read_text())["models"]["run_model"]
    assert yaml.safe_load(out.split("Published")[0])["run_model"] == entry
    assert entry["metrics"]["top1"] == 88.25 and entry["metrics"]["top5"] == 99.5
    assert (entry["resolution"], entry["resize"], entry["mean"], entry["std"]) == (
        28,
        None,
        [0.286],
        [0.353],
    )
    assert entry["dataset"] == "fashion_mnist_test"
    model_zoo.add_catalog(zoo)
    loaded = model_zoo.get("run_model", pretrained=True).eval()
    assert torch.equal(loaded(image()), trained[1](image()))

    # --arch/--weights, a dataset override, no copy
    code = cli.main(
        ["--name", "by_files", "--catalog", str(zoo), "--arch", str(run / "arch.yaml")]
        + ["--weights", str(run / "model_final.pth"), "--metrics", str(run / "metrics.json")]
        + ["--dataset", "Fashion-MNIST", "--no-copy"]
    )
    assert code == 0
    entry = model_zoo.get_model_info("by_files")
    assert entry["dataset"] == "Fashion-MNIST" and os.path.isabs(entry["weights"]["url"])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"val_top5": None}, "has no 'val_top5' field"),
        ({"input": {"resolution": 28, "mean": [0.2], "std": [0.3]}}, "no 'input.in_channels'"),
        ({"task": "search"}, "'search' run"),
        ({"input": {"resolution": 28, "mean": [0.2], "std": [0.3], "in_channels": 3}}, "channel"),
        ("model_final.pth", "Weights file .* does not exist"),
        ("arch.yaml", "Arch file .* does not exist"),
    ],
)
def test_cli_errors_are_one_line(cli, trained, tmp_path, capsys, change, match):
    run = make_run(tmp_path / "run", trained)
    if isinstance(change, str):
        (run / change).unlink()
    else:
        metrics = json.loads((run / "metrics.json").read_text())
        metrics.update(change)
        metrics = {k: v for k, v in metrics.items() if v is not None}
        (run / "metrics.json").write_text(json.dumps(metrics))
    assert cli.main(["--name", "x", "--catalog", str(tmp_path / "zoo"), "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err
    assert not (tmp_path / "zoo").exists()


def test_cli_as_a_script(trained, tmp_path, repo_root):
    result = subprocess.run(
        [sys.executable, str(repo_root / "tools/publish_model.py"), "--name", "FBNetV2_F4"]
        + ["--catalog", str(tmp_path / "zoo"), "--run", str(make_run(tmp_path / "run", trained))],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and BUILTIN_FILE in result.stderr
