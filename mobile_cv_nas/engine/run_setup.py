"""The start of a run's output: the temporaries an interrupted write left in OUTPUT_DIR
removed, then detectron2's default_setup (OUTPUT_DIR, log file, config.yaml: a run's first
writes, made only after its input was checked) and the project's logger."""

import logging

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..io import remove_stray_temporaries
from .checkpointer import rng_state, set_rng_state

logger = logging.getLogger(__name__)


def setup_run(cfg, args, resumed=False):
    """default_setup seeds every RNG; a resumed run keeps the RNG state its checkpoint
    restored. The main process first removes the temporaries of writes that a crash or kill
    interrupted (io.stage_write's names): tools/train_net.py holds OUTPUT_DIR's lock, so no
    other run is writing there."""
    state = rng_state() if resumed else None
    strays = remove_stray_temporaries(cfg.OUTPUT_DIR) if comm.is_main_process() else []
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="mobile_cv_nas", abbrev_name="nas"
    )
    if strays:
        logger.warning(
            f"Removed {len(strays)} temporary file(s) that an interrupted write left in "
            f"{cfg.OUTPUT_DIR}: {', '.join(strays)}."
        )
    if state is not None:
        set_rng_state(state)
