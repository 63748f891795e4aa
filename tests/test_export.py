"""Zoo models deploy: `torch.jit.script` and `torch.export.export` give eager's outputs.

Eval mode, small inputs. The models get random BatchNorm statistics and affine parameters first:
freshly built, the residual blocks' last BN gamma is zero (zero_last_bn_gamma) and would hide
their branches. Scripted and exported programs run the same ATen kernels as eager on the same
input, so outputs are compared bitwise (measured: identical).
"""

import io

import pytest
import torch
import torch.nn as nn

from mobile_cv_nas import model_zoo

# TorchScript is deprecated in torch 2.x but still supported; it is what is tested here.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.(script|save|load)` is deprecated:FutureWarning"
)

CLASSIFIER = "FBNetV2_F1"
OUT_FEATURES = ["stage2", "stage4", "stage6"]
BACKBONE_SIZE = 64  # any size works for the backbone; small keeps the test fast


def randomize_bn(model):
    """Random BN statistics and affine parameters, so every branch contributes."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return randomize_bn(model_zoo.get(CLASSIFIER))


@pytest.fixture(scope="module")
def backbone():
    return randomize_bn(model_zoo.get(CLASSIFIER, out_features=OUT_FEATURES))


def image(batch, size):
    return torch.randn(batch, 3, size, size)


def assert_same_features(ours, eager):
    assert isinstance(ours, dict) and list(ours) == list(eager) == OUT_FEATURES
    for name in OUT_FEATURES:
        assert torch.equal(ours[name], eager[name]), name


@torch.no_grad()
def test_script_classifier_matches_eager(classifier):
    """The scripted classifier, and the same after a save/load round trip, give eager's logits."""
    x = image(2, classifier.model_info["resolution"])
    eager = classifier(x)
    assert eager.shape == (2, 1000) and eager.std() > 0
    scripted = torch.jit.script(classifier)
    assert torch.equal(scripted(x), eager)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    assert torch.equal(torch.jit.load(buffer)(x), eager)


@torch.no_grad()
def test_export_classifier_matches_eager(classifier):
    """torch.export with a dynamic batch: the exported program gives eager's logits at any batch."""
    res = classifier.model_info["resolution"]
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(classifier, (image(2, res),), dynamic_shapes=({0: batch},))
    exported = program.module()
    for n in (2, 3):
        x = image(n, res)
        assert torch.equal(exported(x), classifier(x)), n


@torch.no_grad()
def test_export_backbone_out_features_matches_eager(backbone):
    """The feature backbone exports with its dict of named stage outputs, equal to eager's."""
    x = image(2, BACKBONE_SIZE)
    eager = backbone(x)
    assert {f: y.shape[1] for f, y in eager.items()} == {
        f: backbone.feature_channels[f] for f in OUT_FEATURES
    }
    exported = torch.export.export(backbone, (x,)).module()
    assert_same_features(exported(x), eager)


@torch.no_grad()
def test_script_backbone_out_features_matches_eager(backbone):
    """The scripted feature backbone returns eager's dict of stage outputs."""
    x = image(2, BACKBONE_SIZE)
    assert_same_features(torch.jit.script(backbone)(x), backbone(x))
