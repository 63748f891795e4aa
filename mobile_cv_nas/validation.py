"""Small helpers shared by the arch-def and search-space validators."""


def is_int(value):
    """An int that is not a bool (YAML `true` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(value, where, error=ValueError):
    """Raise `error` naming `where` unless `value` is an int > 0."""
    if not is_int(value) or value <= 0:
        raise error(f"{where}: must be a positive integer, got {value!r}.")


def error_location(subject, stage=None, item=None, field=None):
    """ "arch 'x', stage 2, block 1, field 'op'": where an error is, for its message.

    `item` is a (label, index) pair such as ("block", 1) or ("row", 0).
    """
    parts = [subject]
    if stage is not None:
        parts.append(f"stage {stage}")
    if item is not None and item[1] is not None:
        parts.append(f"{item[0]} {item[1]}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ", ".join(parts)
