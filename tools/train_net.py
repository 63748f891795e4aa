#!/usr/bin/env python
"""Search, train or evaluate FBNetV2 models on detectron2's engine.

    python tools/train_net.py --config-file configs/search/fashion_mnist_cpu.yaml
    python tools/train_net.py --config-file configs/train/fashion_mnist_cpu.yaml \\
        MODEL.MOBILE_CV_NAS.ARCH output/search_demo/arch.yaml
    python tools/train_net.py --eval-only --config-file CONFIG MODEL.MOBILE_CV_NAS.ARCH NAME \\
        MODEL.WEIGHTS zoo

    python tools/train_net.py --config-file configs/detection/faster_rcnn_fbnetv2_f4_fpn.yaml
    python tools/train_net.py --eval-only --config-file configs/detection/CONFIG.yaml \\
        MODEL.WEIGHTS output/detection/model_final.pth

The config's TASK picks the job (search, train; --eval-only: eval; detection: train a
detectron2 detector with an FBNetV2 backbone, with --eval-only: COCO-evaluate MODEL.WEIGHTS).
detectron2's flags work as usual: --resume continues OUTPUT_DIR's last checkpoint, --num-gpus
N runs N processes (on CPU too, with gloo), and trailing KEY VALUE pairs override the config.
"""

import sys

from mobile_cv_nas.cli_quiet import quiet_third_party_imports

quiet_third_party_imports()

from mobile_cv_nas.cli_errors import one_line  # noqa: E402
from mobile_cv_nas.engine import check_output_dir, launch, main, parse_args, setup_cfg  # noqa: E402
from mobile_cv_nas.engine.errors import USER_ERRORS  # noqa: E402
from mobile_cv_nas.engine.launch import WorkerExit  # noqa: E402
from mobile_cv_nas.engine.run_config import check_output_path  # noqa: E402
from mobile_cv_nas.engine.run_lock import output_dir_lock  # noqa: E402


def cli(argv=None):
    args = parse_args(argv)
    try:
        cfg = setup_cfg(args)
        check_output_path(cfg.OUTPUT_DIR)
        # one run per OUTPUT_DIR, held until every process of this one has ended
        with output_dir_lock(cfg.OUTPUT_DIR):
            check_output_dir(cfg, args.resume, args)
            launch(
                main,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(cfg, args),
                device=cfg.MODEL.DEVICE,
                user_errors=USER_ERRORS,
            )
    except USER_ERRORS as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's, not the project's: a folder, a disk, a permission
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # a non-finite loss (detectron2's message has 2 lines)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    except WorkerExit as e:  # a process of several ended with e.status and its error
        if str(e):
            print(f"error: {e}", file=sys.stderr)
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(cli())
