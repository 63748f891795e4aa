"""A diverged run's stop: a non-finite loss or weight ends every training task with one line
naming the last good checkpoint (tools/train_net.py prints it, exit status 1), and nothing is
saved after it."""

import torch


class NonFiniteLossError(FloatingPointError):
    """A loss that is NaN or infinite: the run stops, keeping its last good checkpoint."""


def last_good_checkpoint(checkpointer):
    """The path `last_checkpoint` names, or "(none yet)"."""
    if not checkpointer.has_checkpoint():
        return "(none yet)"
    return checkpointer.get_checkpoint_file() or "(none yet)"


def non_finite_tensors(state_dict):
    """The names of the floating-point tensors of `state_dict` with a NaN or an infinity."""
    return [
        name
        for name, value in state_dict.items()
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()
    ]


def non_finite_error(what, iteration, last_checkpoint, learning_rates):
    """The error of a run whose `what` (e.g. "training loss (nan)") is not finite at
    `iteration`: it names the last good checkpoint (a path, or "(none yet)") and the
    `learning_rates` keys to lower."""
    return NonFiniteLossError(
        f"Non-finite {what} at iteration {iteration}: the run stopped. The last good "
        f"checkpoint is {last_checkpoint}. --resume with the same config would repeat the same "
        f"steps; lower the learning rate ({learning_rates}) and start a new run in a new "
        f"OUTPUT_DIR."
    )
