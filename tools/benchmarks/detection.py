"""CPU latency and FLOPs of the FBNetV2 detectors against detectron2's R-50 FPN Faster R-CNN
(tools/benchmark_detection.py).

For each model (random weights, eval mode, batch 1, a square image of `size` pixels, already
at the input size: no resizing):

* body: the bottom-up network alone (FBNetV2 stages up to stride 32 / ResNet-50 res2-res5);
* backbone: body + FPN (what `model.backbone` computes; the p2-p6 maps);
* detector: the whole Faster R-CNN inference (normalisation, backbone, RPN with its NMS,
  RoI heads, post-processing), `model([{"image": ...}])`.

Latency is the median wall time of `repeats` runs after `warmup` runs, in this process's
torch threads (the tool sets 1 by default). FLOPs are fvcore's FlopCountAnalysis (one
multiply-add = one flop, fvcore's convention) of the body and backbone on the image tensor,
and of the detector's inference traced on the image (TracedInference; ops fvcore has no
counter for, e.g. NMS, count 0).
"""

import dataclasses
import logging
import statistics
import time
import warnings

import torch
import torch.nn as nn
from detectron2 import model_zoo as d2_model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from fvcore.nn import FlopCountAnalysis

import mobile_cv_nas.detection  # noqa: F401  (registers the FBNetV2 backbones and heads)
from mobile_cv_nas.engine import new_config  # the project's keys, as tools/train_net.py reads them

logger = logging.getLogger(__name__)

#: name -> (config under configs/detection, or detectron2 model-zoo yaml for R-50)
MODELS = {
    "FBNetV2_F4 FPN": "faster_rcnn_fbnetv2_f4_fpn.yaml",
    "FBNetV2_L2 FPN": "faster_rcnn_fbnetv2_l2_fpn.yaml",
    "R-50 FPN": "d2://COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
}
REFERENCE = "R-50 FPN"


@dataclasses.dataclass
class Measurement:
    name: str
    body_ms: float
    backbone_ms: float
    detector_ms: float
    body_gflops: float
    backbone_gflops: float
    detector_gflops: float
    params_m: float
    proposals: int


def detector_config(source, config_dir):
    """The inference config of a benchmark model on CPU with random weights: a config file
    under `config_dir` (read as tools/train_net.py does), or d2://<detectron2 model-zoo yaml>."""
    if source.startswith("d2://"):
        cfg = get_cfg()
        cfg.merge_from_file(d2_model_zoo.get_config_file(source[len("d2://") :]))
    else:
        cfg = new_config()
        cfg.merge_from_file(str(config_dir / source))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg


def build_detector(cfg):
    model = build_model(cfg).eval()
    return model


def _median_ms(fn, warmup, repeats):
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


class TracedInference(nn.Module):
    """A GeneralizedRCNN's inference on one image tensor, returning tensors (boxes, scores),
    so that fvcore can trace it (detectron2's own FlopCountAnalysis wrapper needs
    detectron2.export, which needs caffe2 in detectron2 0.6)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        (instances,) = self.model.inference([{"image": image}], do_postprocess=False)
        return instances.pred_boxes.tensor, instances.scores


def _flops(model, inputs):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        counter = FlopCountAnalysis(model, inputs)
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return counter.total() / 1e9


def measure(name, model, size=320, warmup=2, repeats=10, flops=True):
    """The Measurement of `model` (a detectron2 GeneralizedRCNN with an FPN backbone) on a
    random size x size image."""
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8).float()
    batch = [{"image": image, "height": size, "width": size}]
    with torch.no_grad():
        tensor = model.preprocess_image(batch).tensor
    body = model.backbone.bottom_up
    times = {
        "body": _median_ms(lambda: body(tensor), warmup, repeats),
        "backbone": _median_ms(lambda: model.backbone(tensor), warmup, repeats),
        "detector": _median_ms(lambda: model(batch), warmup, repeats),
    }
    if flops:
        gflops = {
            "body": _flops(body, (tensor,)),
            "backbone": _flops(model.backbone, (tensor,)),
            "detector": _flops(TracedInference(model), (image,)),
        }
    else:
        gflops = dict.fromkeys(times, float("nan"))
    return Measurement(
        name=name,
        body_ms=times["body"],
        backbone_ms=times["backbone"],
        detector_ms=times["detector"],
        body_gflops=gflops["body"],
        backbone_gflops=gflops["backbone"],
        detector_gflops=gflops["detector"],
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        proposals=model.proposal_generator.post_nms_topk[False],
    )


def table(rows, reference=REFERENCE):
    """A Markdown table of the rows, with each value's ratio to the reference row's."""
    ref = next((r for r in rows if r.name == reference), None)

    def cell(row, field, fmt):
        value = getattr(row, field)
        text = format(value, fmt)
        if ref is not None and row is not ref and getattr(ref, field):
            text += f" ({value / getattr(ref, field):.2f}x)"
        return text

    header = (
        "| model | body ms | backbone+FPN ms | detector ms | body GFLOPs | backbone+FPN GFLOPs "
        "| detector GFLOPs | params (M) | RPN proposals |"
    )
    lines = [header, "|" + " --- |" * 9]
    for r in rows:
        cells = [
            r.name,
            cell(r, "body_ms", ".1f"),
            cell(r, "backbone_ms", ".1f"),
            cell(r, "detector_ms", ".1f"),
            cell(r, "body_gflops", ".2f"),
            cell(r, "backbone_gflops", ".2f"),
            cell(r, "detector_gflops", ".2f"),
            cell(r, "params_m", ".1f"),
            str(r.proposals),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
