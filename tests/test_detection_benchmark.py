"""tools/benchmark_detection.py's pieces on tiny inputs: the configs it reads build, latency and
fvcore FLOPs of body, backbone and detector are positive and ordered, and the table gives
ratios to R-50 FPN."""

import dataclasses
from pathlib import Path

import pytest

from benchmarks import detection as benchmark

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "detection"


@pytest.fixture(scope="module")
def f4():
    cfg = benchmark.detector_config(benchmark.MODELS["FBNetV2_F4 FPN"], CONFIG_DIR)
    return benchmark.build_detector(cfg)


def test_measure_fbnet(f4):
    row = benchmark.measure("FBNetV2_F4 FPN", f4, size=64, warmup=0, repeats=1)
    assert row.body_ms > 0 and row.backbone_ms > 0 and row.detector_ms > 0
    assert 0 < row.body_gflops < row.backbone_gflops < row.detector_gflops
    assert row.proposals == f4.proposal_generator.post_nms_topk[False]
    # FLOPs grow about with the pixels: 4x the area, about 4x the body's FLOPs
    bigger = benchmark.measure("FBNetV2_F4 FPN", f4, size=128, warmup=0, repeats=1)
    assert 3 < bigger.body_gflops / row.body_gflops < 5


def test_reference_builds_from_detectron2_model_zoo():
    cfg = benchmark.detector_config(benchmark.MODELS[benchmark.REFERENCE], CONFIG_DIR)
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone" and cfg.MODEL.RESNETS.DEPTH == 50
    model = benchmark.build_detector(cfg)
    assert sum(p.numel() for p in model.backbone.bottom_up.parameters()) > 20e6


def test_table_ratios():
    ref = benchmark.Measurement(benchmark.REFERENCE, 100, 200, 400, 4, 8, 16, 40, 1000)
    row = dataclasses.replace(ref, name="mine", body_ms=25, detector_gflops=4, proposals=500)
    text = benchmark.table([row, ref])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model |")
    assert "25.0 (0.25x)" in lines[2] and "4.00 (0.25x)" in lines[2] and "| 500 |" in lines[2]
    assert "x)" not in lines[3]  # the reference row has no ratios
