"""What the tools keep off stderr at start-up: warnings that third-party imports print and
that say nothing a user can act on. A tool calls `quiet_third_party_imports()` before it
imports detectron2, fvcore or torch.utils.benchmark (the `mobile_cv_nas` package itself
imports nothing)."""

import logging
import warnings


def quiet_third_party_imports():
    # detectron2 0.6's model_zoo imports pkg_resources, which warns on import
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    # fvcore.nn scripts a loss with torch.jit.script at import, which recent torch deprecates
    warnings.filterwarnings(
        "ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning
    )
    # torch's cpp_extension (imported by torch.utils.benchmark, the latency timer, and by
    # detectron2's environment report, which goes to log.txt) warns on a machine without
    # CUDA that has a CUDA_HOME
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
