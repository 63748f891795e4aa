"""The start of a run's output: detectron2's default_setup (OUTPUT_DIR, log file,
config.yaml: a run's first writes, made only after its input was checked) and the project's
logger."""

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .checkpointer import rng_state, set_rng_state


def setup_run(cfg, args, resumed=False):
    """default_setup seeds every RNG; a resumed run keeps the RNG state its checkpoint
    restored."""
    state = rng_state() if resumed else None
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="mobile_cv_nas", abbrev_name="nas"
    )
    if state is not None:
        set_rng_state(state)
