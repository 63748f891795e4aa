"""The one arch namespace, MODEL.MOBILE_CV_NAS, and its one resolution (mobile_cv_nas.config):
a zoo name, an arch YAML or an inline def, for classification and detection alike; the old
namespaces (MODEL.FBNET, MODEL.FBNET_V2) are refused with the new key named."""

import pytest
import yaml
from engine_helpers import TRAIN_CONFIG, one_line_error, train_net
from fvcore.common.config import CfgNode

from mobile_cv_nas import model_zoo
from mobile_cv_nas.config import (
    ArchConfigError,
    add_arch_config,
    add_mobile_cv_nas_config,
    resolve_arch,
)

INLINE = {
    "name": "inline_tiny",
    "input_size": 32,
    "stages": [
        [{"op": "conv_k3", "out_channels": 8, "stride": 2}],
        [{"op": "ir_k3", "out_channels": 8, "expansion": 3}],
    ],
}


def _cfg():
    cfg = CfgNode()
    cfg.MODEL = CfgNode()
    cfg.SOLVER = CfgNode()
    return add_mobile_cv_nas_config(cfg)


def test_add_arch_config_is_idempotent_and_shared():
    cfg = _cfg()
    cfg.MODEL.MOBILE_CV_NAS.ARCH = "FBNetV2_F1"
    add_arch_config(cfg)  # a second add (e.g. detection's) keeps the values
    assert cfg.MODEL.MOBILE_CV_NAS.ARCH == "FBNetV2_F1"
    assert cfg.MODEL.MOBILE_CV_NAS.NORM == "BN"
    assert set(cfg.MODEL.MOBILE_CV_NAS) >= {"ARCH", "ARCH_DEF", "NORM", "WIDTH_DIVISOR"}


def test_resolves_zoo_name_file_and_inline(tmp_path):
    cfg = _cfg()
    cfg.MODEL.MOBILE_CV_NAS.ARCH = "fbnetv2_f1"  # any letter case
    arch, info = resolve_arch(cfg)
    assert info["name"] == "FBNetV2_F1"
    assert arch.blocks() and arch.input_size == model_zoo.get_model_info("FBNetV2_F1")["resolution"]

    path = tmp_path / "my_arch.yaml"
    path.write_text(yaml.safe_dump(INLINE))
    cfg.MODEL.MOBILE_CV_NAS.ARCH = str(path)
    arch, info = resolve_arch(cfg)
    assert info is None and arch.name == "inline_tiny"

    cfg.MODEL.MOBILE_CV_NAS.ARCH = ""
    cfg.MODEL.MOBILE_CV_NAS.ARCH_DEF = CfgNode(INLINE, new_allowed=True)
    arch, info = resolve_arch(cfg)
    assert info is None and [b.out_channels for b in arch.blocks()] == [8, 8]

    cfg.MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR = 4
    assert resolve_arch(cfg)[0].width_divisor == 4


@pytest.mark.parametrize(
    "arch, divisor, expected",
    [
        ("", 0, "No architecture: set MODEL.MOBILE_CV_NAS.ARCH"),
        ("FBNetV2_Z9", 0, "MODEL.MOBILE_CV_NAS.ARCH 'FBNetV2_Z9'"),
        ("missing/arch.yaml", 0, "MODEL.MOBILE_CV_NAS.ARCH 'missing/arch.yaml'"),
        ("FBNetV2_F1", -8, "MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR"),
    ],
)
def test_bad_arch_keys_name_the_key(arch, divisor, expected):
    cfg = _cfg()
    cfg.MODEL.MOBILE_CV_NAS.ARCH = arch
    cfg.MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR = divisor
    with pytest.raises(ArchConfigError, match=expected.replace("(", r"\(")):
        resolve_arch(cfg)


@pytest.mark.parametrize("old", ["MODEL.FBNET.ARCH", "MODEL.FBNET_V2.ARCH"])
def test_old_key_on_command_line_names_the_new_one(old, tmp_path):
    status, err = train_net(
        ["--config-file", TRAIN_CONFIG, "OUTPUT_DIR", tmp_path / "out", old, "FBNetV2_F1"]
    )
    assert status == 2
    line = one_line_error(err)
    assert f"{old} was renamed to MODEL.MOBILE_CV_NAS.ARCH" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("old", ["FBNET", "FBNET_V2"])
def test_old_node_in_yaml_names_the_new_one(old, tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text(f"_BASE_: {TRAIN_CONFIG}\nMODEL:\n  {old}:\n    ARCH: FBNetV2_F1\n")
    status, err = train_net(["--config-file", config, "OUTPUT_DIR", tmp_path / "out"])
    assert status == 2
    assert f"MODEL.{old} was renamed to MODEL.MOBILE_CV_NAS" in one_line_error(err)
    assert not (tmp_path / "out").exists()
