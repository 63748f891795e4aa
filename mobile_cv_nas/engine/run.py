"""The body of tools/train_net.py: each launched process runs the config's task, one module
per task (engine/search_task.py, classification_task.py, detection_task.py); the config and
its checks are engine/run_config.py.

Every check of the user's input (config keys and values, data folders, search space, arch,
cost target, output folder) runs before anything is written, so a bad input leaves no half
run behind. A run's files are written by the main process only; evaluation runs on every
process (each holds a shard of the data).
"""

from .classification_task import run_eval, run_train
from .detection_task import run_detection
from .run_config import check_output_dir, new_config, parse_args, setup_cfg
from .search_task import run_search

__all__ = [
    "TASK_RUNNERS",
    "check_output_dir",
    "main",
    "new_config",
    "parse_args",
    "setup_cfg",
]

TASK_RUNNERS = {
    "search": run_search,
    "train": run_train,
    "eval": run_eval,
    "detection": run_detection,
}


def main(cfg, args):
    """Run the config's task in this process (one of the launched ones)."""
    return TASK_RUNNERS[cfg.TASK](cfg, args)
