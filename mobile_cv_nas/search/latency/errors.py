"""The latency package's one user error."""


class LatencyTableError(ValueError):
    """A latency table that is malformed, incomplete or does not fit what it is used for (or
    a block it cannot describe); the message names what differs and how to rebuild the
    table."""
