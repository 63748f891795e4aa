"""tools/train_net.py's search task end to end on the embedded Fashion-MNIST subset: the files
a finished search leaves, the same result from the same seed, and an exact --resume after a
SIGKILL or an in-process stop between checkpoints."""

import hashlib
import json
import math
import os
import signal
import stat

import pytest
import torch
from engine_helpers import (
    SEARCH_CONFIG,
    SEARCH_ITERS,
    assert_same_alphas,
    final_alphas,
    search_argv,
    start_train_net,
    train_net,
    wait_for_checkpoint,
)
from PIL import Image

from mobile_cv_nas.arch import build_model, load_arch_def
from mobile_cv_nas.engine.search_trainer import SearchTrainer
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import TemperatureSchedule

EPOCH_ITERS = 6
LOG_PERIOD = 3


# configs/search/fashion_mnist_cpu.yaml's temperature
def _demo_schedule():
    """The demo config's temperature schedule (NAS.TAU), as the shared run uses it."""
    from mobile_cv_nas.engine import new_config

    cfg = new_config()
    cfg.merge_from_file(SEARCH_CONFIG)
    return TemperatureSchedule(cfg.NAS.TAU.START, cfg.NAS.TAU.DECAY, cfg.NAS.TAU.MIN)


SCHEDULE = _demo_schedule()


@pytest.fixture(scope="module")
def run(shared_search_run):
    return shared_search_run


def _records(out, name="checkpoint_final.pth"):
    data = torch.load(os.path.join(out, name), map_location="cpu", weights_only=True)
    return data["trainer"]["hooks"]["SearchRecorder"]["records"]


def _events(out):
    with open(os.path.join(out, "events.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_search_writes_a_buildable_arch_matching_its_decisions(run):
    arch = load_arch_def(run / "arch.yaml")
    with open(run / "metrics.json") as f:
        metrics = json.load(f)
    model = build_model(arch).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, arch.in_channels, arch.input_size, arch.input_size))
    assert logits.shape == (2, 10)
    assert arch.in_channels == 1  # the data's, not the space's default
    for key in (
        "task",
        "space",
        "dataset",
        "classes",
        "iterations",
        "final_tau",
        "cost_target_m",
        "space_cost_range_m",
        "searched",
        "inherited_val_top1",
        "inherited_val_count",
        "decisions",
        "seconds",
    ):
        assert key in metrics, key
    assert metrics["task"] == "search" and metrics["space"] == "fashion_mnist"
    assert metrics["iterations"] == SEARCH_ITERS
    assert metrics["inherited_val_count"] == 2000  # the whole subset val split
    assert 0 <= metrics["inherited_val_top1"] <= 100
    # the launcher's per-iteration timer (detectron2's IterationTimer records from the third
    # iteration on); alphas train from iteration 0, so there are no weight-only iterations
    timed = metrics["iteration_time"]
    assert timed["timed_iterations"] == SEARCH_ITERS - 2
    assert timed["search_iteration_s"] > 0 and timed["weight_step_s"] is None
    # the arch is the argmax of the final alphas but for the decisions the budget derivation
    # moved (NAS.DERIVE budget), and metrics.json says what it costs
    alphas = final_alphas(run)
    assert alphas.keys() == metrics["decisions"].keys()
    moved = {c["decision"]: c for c in metrics["landing"]["budget_changes"]}
    for name, decision in metrics["decisions"].items():
        argmax = decision["options"][int(alphas[name].argmax())]
        if name in moved:
            assert moved[name]["argmax"] == argmax and decision["chosen"] == moved[name]["chosen"]
        else:
            assert decision["chosen"] == argmax, name
        probs = torch.softmax(alphas[name].double(), -1)
        assert decision["probs"] == pytest.approx(probs.tolist(), abs=1e-6), name
    resolution = metrics["decisions"]["resolution"]
    assert arch.input_size == resolution["chosen"] in resolution["options"]
    report = count_flops(build_model(arch), arch.input_size)
    assert metrics["searched"]["flops_m"] == pytest.approx(report.mflops)
    assert metrics["searched"]["params_m"] == pytest.approx(report.mparams)
    low, high = metrics["space_cost_range_m"]
    assert low <= report.mflops <= high


def test_search_writes_pictures_and_names_its_last_checkpoint(run):
    for picture in ("arch.png", "search_curves.png"):
        with Image.open(run / picture) as image:
            image.load()  # decodes the whole file
            assert image.format == "PNG" and min(image.size) > 100, picture
    assert (run / "last_checkpoint").read_text().strip() == "checkpoint_final.pth"
    data = torch.load(run / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    # the last iteration (0-based) and the trainer's state after it, as detectron2's final
    # checkpoint holds them: a --resume of a longer schedule starts at SEARCH_ITERS
    assert data["trainer"]["iteration"] == data["iteration"] == SEARCH_ITERS - 1
    # the atomically written files get the usual permissions, not mkstemp's private 0600
    umask = os.umask(0)
    os.umask(umask)
    for name in ("arch.yaml", "metrics.json", "checkpoint_final.pth", "last_checkpoint"):
        assert stat.S_IMODE(os.stat(run / name).st_mode) == 0o666 & ~umask, name


def test_every_checkpoint_has_its_sha256_beside_it(run):
    """Recorded when written (sha256sum's format); a checkpoint the schedule removed (keep 2)
    took its sha256 file along."""
    checkpoints = sorted(p.name for p in run.glob("*.pth"))
    assert checkpoints == [
        "checkpoint_0000008.pth",
        "checkpoint_0000011.pth",
        "checkpoint_final.pth",
    ]
    assert sorted(p.name for p in run.glob("*.sha256")) == [f"{n}.sha256" for n in checkpoints]
    for name in checkpoints:
        digest = hashlib.sha256((run / name).read_bytes()).hexdigest()
        assert (run / f"{name}.sha256").read_text() == f"{digest}  {name}\n"


def test_events_follow_the_temperature_schedule_per_epoch(run):
    events = _events(run)
    logged = [e for e in events if "tau" in e]
    # one line per record (NAS.LOG_PERIOD iterations), with tau, cost and alpha entropies
    assert [e["iteration"] for e in logged] == list(range(LOG_PERIOD - 1, SEARCH_ITERS, LOG_PERIOD))
    for e in logged:
        assert e["tau"] == pytest.approx(SCHEDULE(e["iteration"] // EPOCH_ITERS)), e["iteration"]
        assert math.isfinite(e["effective_mflops"]) and e["effective_mflops"] > 0
        entropies = {k: v for k, v in e.items() if k.startswith("alpha_entropy/")}
        assert len(entropies) == 14  # every searched decision of the fashion_mnist space
        assert "alpha_entropy/resolution" in entropies
        assert e["mean_alpha_entropy"] == pytest.approx(
            sum(entropies.values()) / len(entropies), rel=1e-9
        )
    assert {e["tau"] for e in logged} == {SCHEDULE(0), SCHEDULE(1)} and SCHEDULE(1) < SCHEDULE(0)
    # the curves' records: the same temperatures, per epoch
    records = _records(run)
    assert [r["iteration"] for r in records] == [3, 6, 9, 12]
    for r in records:
        assert r["tau"] == pytest.approx(SCHEDULE((r["iteration"] - 1) // EPOCH_ITERS))


def test_same_seed_same_search(run, tmp_path):
    out = tmp_path / "again"
    status, err = train_net(search_argv(out))
    assert status == 0, err
    first, second = final_alphas(run), final_alphas(out)
    assert_same_alphas(first, second)
    assert any(not torch.equal(a, torch.zeros_like(a)) for a in first.values())  # they moved
    assert (run / "arch.yaml").read_text() == (out / "arch.yaml").read_text()
    assert _records(run) == _records(out)


@pytest.mark.parametrize("sampling", ["mixture", "single_path"])
def test_resume_after_sigkill_is_exact(run, tmp_path, sampling):
    extra = ("NAS.SAMPLING", sampling)
    if sampling != "mixture":  # the uninterrupted run of this mode, for reference
        run = tmp_path / "whole"
        status, err = train_net(search_argv(run, *extra))
        assert status == 0, err
    out = tmp_path / "killed"
    with open(tmp_path / "child.log", "w") as log:
        child = start_train_net(search_argv(out, *extra), log)
        try:
            wait_for_checkpoint(child, out, tmp_path / "child.log", timeout=120)
            running = child.poll() is None
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
    assert running and child.returncode == -signal.SIGKILL
    stopped_at = (out / "last_checkpoint").read_text().strip()
    assert stopped_at != "checkpoint_final.pth" and not (out / "checkpoint_final.pth").exists()

    status, err = train_net(["--resume", *search_argv(out, *extra)])
    assert status == 0, err
    assert (out / "last_checkpoint").read_text().strip() == "checkpoint_final.pth"
    # the first part ran in another process: equal within 1e-6 (in practice bitwise)
    assert_same_alphas(final_alphas(out), final_alphas(run), atol=1e-6)
    resumed, whole = _records(out), _records(run)
    assert [(r["iteration"], r["tau"]) for r in resumed] == [
        (r["iteration"], r["tau"]) for r in whole
    ]
    for a, b in zip(resumed, whole, strict=True):
        assert a["probs"].keys() == b["probs"].keys()
        for name in a["probs"]:
            assert a["probs"][name] == pytest.approx(b["probs"][name], abs=1e-6)
    assert (out / "arch.yaml").read_text() == (run / "arch.yaml").read_text()


class _Stop(Exception):
    pass


def test_resume_after_a_stop_between_checkpoints_is_exact(run, tmp_path, monkeypatch):
    out = tmp_path / "stopped"
    run_step = SearchTrainer.run_step

    def stop_at_7(self):
        if self.iter == 7:  # after checkpoint_0000005 (iterations 0..5), before 0000008
            raise _Stop("stopped")
        run_step(self)

    monkeypatch.setattr(SearchTrainer, "run_step", stop_at_7)
    with pytest.raises(_Stop):
        train_net(search_argv(out))
    monkeypatch.undo()
    assert (out / "last_checkpoint").read_text().strip() == "checkpoint_0000005.pth"
    assert not (out / "checkpoint_final.pth").exists()
    halfway = final_alphas(out, "checkpoint_0000005.pth")

    status, err = train_net(["--resume", *search_argv(out)])
    assert status == 0, err
    resumed = final_alphas(out)
    assert any(not torch.equal(resumed[n], halfway[n]) for n in resumed)  # it trained on
    assert_same_alphas(resumed, final_alphas(run))
    assert _records(out) == _records(run)
