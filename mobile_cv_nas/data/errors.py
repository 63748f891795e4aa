"""The one error type of the data package, so a caller (the launcher) can catch every data
problem, bad path, empty folder or impossible split, and print its message instead of a
traceback from deep inside torchvision."""


class DatasetError(ValueError):
    """A dataset that cannot be built as asked; the message names the input and the fix."""
