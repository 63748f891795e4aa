"""Search -> train -> publish -> zoo: the searched arch trained for a few iterations on the
embedded subset, published with tools/publish_model.py into a user catalog, then loaded by
name from the zoo; its accuracy on the subset's val split, computed here from the catalog's
input settings, is the run's val_top1, and `train_net --eval-only ... MODEL.WEIGHTS zoo`
reports it too. With EMA the published (and evaluated) weights are the average's."""

import contextlib
import hashlib
import io
import json
import os

import pytest
import torch
from engine_helpers import (
    SUBSET_DATA,
    TRAIN_CONFIG,
    one_line_error,
    tool,
    train_net,
)

from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import build_model, load_arch_def
from mobile_cv_nas.data import build_classification_dataset, build_eval_loader, eval_transform
from mobile_cv_nas.engine.classification_trainer import ClassificationTrainer
from mobile_cv_nas.io import stage_write

TRAIN_ITERS = 30


def train_argv(out, arch, *extra):
    return [
        "--config-file", TRAIN_CONFIG, *SUBSET_DATA,
        "MODEL.MOBILE_CV_NAS.ARCH", arch,
        "SOLVER.IMS_PER_BATCH", "16",
        "SOLVER.EPOCHS", "1",
        "SOLVER.EPOCH_ITERS", TRAIN_ITERS,
        "SOLVER.CHECKPOINT_PERIOD", "10",
        "OUTPUT_DIR", out,
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def searched_arch(shared_search_run):
    return shared_search_run / "arch.yaml"


@pytest.fixture
def catalog(tmp_path):
    directory = tmp_path / "zoo"
    yield directory
    model_zoo.remove_catalog(directory)
    assert str(directory.resolve()) not in model_zoo.catalog_dirs()


@torch.no_grad()
def top1(model, info):
    """Top-1 (%) on the subset's val split with the catalog's resolution, resize, mean, std
    and the data package's eval transform."""
    dataset = build_classification_dataset("fashion_mnist_subset_val")
    transform = eval_transform(
        info["resolution"], info["in_channels"], info["mean"], info["std"], resize=info["resize"]
    )
    model.eval()
    hits = count = 0
    for images, labels in build_eval_loader(dataset, transform, 250, 0, 1, 0):
        hits += (model(images).argmax(1) == labels).sum().item()
        count += len(labels)
    assert count == 2000
    return 100.0 * hits / count


def _train_publish_load(tmp_path, catalog, arch, name, *extra):
    out = tmp_path / "train"
    status, err = train_net(train_argv(out, arch, *extra))
    assert status == 0, err
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["task"] == "train" and metrics["iterations"] == TRAIN_ITERS
    assert metrics["val_count"] == 2000
    assert metrics["iteration_time"]["iteration_s"] > 0  # to compare with a search's
    assert (
        tool("publish_model").main(["--name", name, "--catalog", str(catalog), "--run", str(out)])
        == 0
    )
    model_zoo.add_catalog(catalog)
    info = model_zoo.get_model_info(name)
    assert info["metrics"]["top1"] == metrics["val_top1"]
    assert (info["resolution"], info["mean"], info["std"]) == (
        metrics["input"]["resolution"],
        metrics["input"]["mean"],
        metrics["input"]["std"],
    )
    model = model_zoo.get(name, pretrained=True)
    return out, metrics, info, model


def _eval_only(tmp_path, name):
    out = tmp_path / "eval"
    # what a killed run's write leaves: removed at the next start, and reported
    stray = stage_write(str(out / "metrics_eval.json"), lambda f: f.write(b"{"))
    argv = ["--eval-only", "--config-file", TRAIN_CONFIG, *SUBSET_DATA]
    status, err = train_net(
        [*argv, "MODEL.MOBILE_CV_NAS.ARCH", name, "MODEL.WEIGHTS", "zoo", "OUTPUT_DIR", out]
    )
    assert status == 0, err
    assert not os.path.exists(stray)
    removed = f"Removed 1 temporary file(s) that an interrupted write left in {out}: "
    assert removed + os.path.basename(stray) in (out / "log.txt").read_text()
    with open(out / "metrics_eval.json") as f:
        return json.load(f)


def test_train_publish_zoo(tmp_path, catalog, searched_arch):
    name = "fmnist_searched_test"
    out, metrics, info, model = _train_publish_load(tmp_path, catalog, searched_arch, name)
    assert metrics["ema"] is False
    # trained (the loss fell), so the zoo model matching the run means something
    with open(out / "events.json") as f:
        losses = [json.loads(line)["total_loss"] for line in f if "total_loss" in line]
    assert losses[-1] < losses[0]
    published = torch.load(out / "model_final.pth", map_location="cpu")["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, published[key]), key
    accuracy = top1(model, info)
    assert accuracy == pytest.approx(metrics["val_top1"], abs=1e-6)
    evaluated = _eval_only(tmp_path, name)
    assert evaluated["val_count"] == 2000
    assert evaluated["val_top1"] == pytest.approx(metrics["val_top1"], abs=1e-6)
    assert evaluated["val_top5"] == pytest.approx(metrics["val_top5"], abs=1e-6)
    # the zoo model is the run's arch (the searched one, input size the search's)
    searched = load_arch_def(searched_arch)
    assert info["resolution"] == searched.input_size
    assert [b.op for b in model.arch_def.blocks()] == [b.op for b in searched.blocks()]
    _changed_weights_are_refused(out, name)


def _changed_weights_are_refused(out, name):
    """The run's model_final.pth has its sha256 beside it; with 400 bytes changed it is
    neither published nor evaluated (one line, exit status 2)."""
    weights = out / "model_final.pth"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (out / "model_final.pth.sha256").read_text() == f"{digest}  model_final.pth\n"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 400] = bytes(400)
    weights.write_bytes(bytes(data))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        argv = ["--name", f"{name}_changed", "--catalog", str(out / "zoo"), "--run", str(out)]
        assert tool("publish_model").main(argv) == 2
    line = one_line_error(err.getvalue())
    assert f"{str(weights)!r} changed since it was written" in line
    assert "Other checkpoints there: checkpoint_0000019.pth, checkpoint_0000029.pth, " in line
    argv = ["--eval-only", "--config-file", TRAIN_CONFIG, *SUBSET_DATA, "OUTPUT_DIR", out / "ev"]
    status, err = train_net(
        [*argv, "MODEL.MOBILE_CV_NAS.ARCH", out / "arch.yaml"] + ["MODEL.WEIGHTS", weights]
    )
    assert status == 2
    assert "changed since it was written" in one_line_error(err)
    assert not (out / "ev").exists() and not (out / "zoo").exists()


def test_train_publish_zoo_with_ema(tmp_path, catalog, searched_arch):
    name = "fmnist_searched_ema_test"
    extra = ("SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "0.9", "TEST.EVAL_PERIOD", "10")
    out, metrics, info, model = _train_publish_load(tmp_path, catalog, searched_arch, name, *extra)
    # TEST.EVAL_PERIOD: validated (the EMA weights) at iterations 10 and 20; the end is the
    # final evaluation's
    with open(out / "events.json") as f:
        events = [json.loads(line) for line in f]
    periodic = [(e["iteration"], e["val_top1"]) for e in events if "val_top1" in e]
    assert [it for it, _ in periodic] == [9, 19]
    assert all(0 <= top1 <= 100 for _, top1 in periodic)
    assert metrics["ema"] is True
    accuracy = top1(model, info)
    assert accuracy == pytest.approx(metrics["val_top1"], abs=1e-6)
    assert _eval_only(tmp_path, name)["val_top1"] == pytest.approx(metrics["val_top1"], abs=1e-6)
    # the raw weights are another model: the published and evaluated ones are the EMA's
    saved = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    raw = build_model(load_arch_def(out / "arch.yaml"))
    raw.load_state_dict(saved["state_dict"])
    assert top1(raw, info) != pytest.approx(accuracy, abs=1e-6)


class _Stop(Exception):
    pass


def test_train_resume_with_ema_is_exact(tmp_path, searched_arch, monkeypatch):
    extra = ("SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "0.9")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    status, err = train_net(train_argv(whole, searched_arch, *extra))
    assert status == 0, err

    run_step = ClassificationTrainer.run_step

    def stop_at_15(self):
        if self.iter == 15:  # after checkpoint_0000009, before checkpoint_0000019
            raise _Stop()
        run_step(self)

    monkeypatch.setattr(ClassificationTrainer, "run_step", stop_at_15)
    with pytest.raises(_Stop):
        train_net(train_argv(parts, searched_arch, *extra))
    monkeypatch.undo()
    assert (parts / "last_checkpoint").read_text().strip() == "checkpoint_0000009.pth"
    status, err = train_net(["--resume", *train_argv(parts, searched_arch, *extra)])
    assert status == 0, err

    a, b = (torch.load(p / "model_final.pth", weights_only=True) for p in (whole, parts))
    for key in ("state_dict", "model_ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    with open(whole / "metrics.json") as f, open(parts / "metrics.json") as g:
        assert json.load(f)["val_top1"] == json.load(g)["val_top1"]
