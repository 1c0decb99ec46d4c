"""One check and one wording for every named choice in segmif: config values, function options,
CLI and node parameters. It sits below every other module (it imports nothing from segmif), so
data, metrics, fusion rules and models can all use it."""
from __future__ import annotations


def check_choice(key: str, value, choices, error: type[Exception] = ValueError) -> None:
    """Refuse a value that is not one of ``choices``.

    Args:
        key: the option's name as the user writes it (``absent``, ``train.val_absent``).
        value: the value given; compared with ``in``, so any hashable or comparable value.
        choices: the allowed values (tuple, list, set or dict keys).
        error: the exception class to raise (``ValueError`` unless the caller's API documents
            another, e.g. ``BackendError``).

    Raises:
        error: "unknown <key> <value>; choose one of <choices>" when ``value`` is not allowed.
    """
    if value not in choices:
        raise error(f"unknown {key} {value!r}; choose one of {tuple(choices)}")
