"""The start of a run's output: the temporaries an interrupted write left in OUTPUT_DIR
removed, then detectron2's default_setup (OUTPUT_DIR, log file, config.yaml: a run's first
writes, made only after its input was checked) and the project's logger.

What a run logs while its input is checked and its model, data and weights are built (before
it may write anything) can be held (`held_logs`) and written to its log once setup_run has
made it: detectron2's dataset summary, class histogram, augmentations and model, and the
weights report, in log.txt and on stdout as in a detectron2 run."""

import contextlib
import logging

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..io import remove_stray_temporaries
from .checkpointer import rng_state, set_rng_state

logger = logging.getLogger(__name__)

#: The loggers a run's log.txt and stdout get (default_setup sets up the first two).
RUN_LOGGERS = ("detectron2", "fvcore", "mobile_cv_nas")


class _HeldRecords(logging.Handler):
    """Keeps the records of RUN_LOGGERS until `replay` sends them to the run's handlers."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.saved = {}  # logger name -> (handlers, level, propagate) before holding

    def emit(self, record):
        self.records.append(record)

    def hold(self):
        """Attach to RUN_LOGGERS in place of their handlers (an earlier run's in this process:
        its log.txt must not get this run's lines), at DEBUG as setup_logger sets them."""
        for name in RUN_LOGGERS:
            one = logging.getLogger(name)
            self.saved[name] = (list(one.handlers), one.level, one.propagate)
            for handler in self.saved[name][0]:
                one.removeHandler(handler)
            one.addHandler(self)
            one.setLevel(logging.DEBUG)
            one.propagate = False
        # setup_logger is cached by its arguments: with those handlers gone it must add the
        # run's own again, even for the same OUTPUT_DIR
        setup_logger.cache_clear()

    def stop(self):
        for name in RUN_LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def restore(self):
        """The loggers as they were before `hold` (a run that failed before setup_run)."""
        self.stop()
        for name, (handlers, level, propagate) in self.saved.items():
            one = logging.getLogger(name)
            for handler in handlers:
                one.addHandler(handler)
            one.setLevel(level)
            one.propagate = propagate
        self.saved = {}

    def replay(self):
        records, self.records, self.saved = self.records, [], {}
        for record in records:
            logging.getLogger(record.name).handle(record)


@contextlib.contextmanager
def held_logs():
    """Hold what RUN_LOGGERS log inside the block until setup_run(..., held=<this>) has made
    the run's log, which then gets them in order. A run that fails inside the block before
    setup_run drops them (its one-line error says what was wrong; nothing was written) and
    leaves the loggers as it found them."""
    held = _HeldRecords()
    held.hold()
    try:
        yield held
    except BaseException:
        if held.saved:
            held.restore()
        raise
    finally:
        held.stop()


def setup_run(cfg, args, resumed=False, held=None):
    """default_setup seeds every RNG; a resumed run keeps the RNG state its checkpoint
    restored. The main process first removes the temporaries of writes that a crash or kill
    interrupted (io.stage_write's names): tools/train_net.py holds OUTPUT_DIR's lock, so no
    other run is writing there. `held`: the records of `held_logs`, written to the log once
    it exists."""
    state = rng_state() if resumed else None
    strays = remove_stray_temporaries(cfg.OUTPUT_DIR) if comm.is_main_process() else []
    if held is not None:
        held.stop()
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="mobile_cv_nas", abbrev_name="nas"
    )
    if held is not None:
        held.replay()
    if strays:
        logger.warning(
            f"Removed {len(strays)} temporary file(s) that an interrupted write left in "
            f"{cfg.OUTPUT_DIR}: {', '.join(strays)}."
        )
    if state is not None:
        set_rng_state(state)
