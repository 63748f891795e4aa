"""What detectron2 0.6 needs from newer libraries than it was written for.

`class_histogram_numpy`: detectron2 0.6's `print_instances_class_histogram` (the "Distribution
of instances among all K categories" table a training run logs) builds its array with
`dtype=np.int`, an alias NumPy 1.24 removed. The AttributeError is caught by detectron2
(`get_detection_dataset_dicts` takes it for "no class names") and the table is silently not
logged. Inside this context `np.int` is `int` again, as it was in the NumPy detectron2 0.6
was written for; it is removed afterwards, so nothing else sees it.
"""

import contextlib

import numpy as np


@contextlib.contextmanager
def class_histogram_numpy():
    if "int" in vars(np):  # an older NumPy that still has the alias: nothing to do
        yield
        return
    np.int = int
    try:
        yield
    finally:
        del np.int
