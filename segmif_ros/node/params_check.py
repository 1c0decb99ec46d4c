"""Parameters given to segmif_node that it does not declare: a misspelt name in a params file
(``slopp: 0.05``), on the command line (``-p slopp:=0.05``) or in a launch file would otherwise
be ignored without a word (the default used instead). Each such name is warned once, with the
closest declared name where one is close.

:func:`unknown_parameters` works on names only (no rclpy import); :func:`warn_unknown_parameters`
reads them from a node. Call it once, after the node has declared its parameters
(``parameters.declare_parameters``), e.g. in ``SegMiFNode.__init__``.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Parameter name prefixes that rclpy reads itself when the node creates its topics, later than
#: the check (``qos_overrides./topic.subscription.depth``, QoSOverridingOptions): never warned.
IGNORED_PREFIXES = ("qos_overrides.",)


def unknown_parameters(given: Iterable[str], known: Iterable[str],
                       ignored_prefixes: Iterable[str] = IGNORED_PREFIXES) -> dict[str, str | None]:
    """The names of ``given`` that are not in ``known`` and start with none of
    ``ignored_prefixes``, each with the closest known name (difflib ratio >= 0.6) or None.

    :returns: ``{unknown name: closest known name or None}`` in sorted name order (empty when
        every name is known).
    """
    known = sorted(set(known))
    prefixes = tuple(ignored_prefixes)
    return {name: next(iter(difflib.get_close_matches(name, known, n=1)), None)
            for name in sorted(set(given))
            if name not in known and not name.startswith(prefixes)}


def warn_unknown_parameters(node, node_name: str = "segmif_node") -> dict[str, str | None]:
    """Warn once per parameter given to ``node`` (params files, ``-p``, launch
    ``parameters=[...]``, ``parameter_overrides``) that the node has not declared.

    ``node``: an ``rclpy.node.Node`` (or LifecycleNode) after its parameters are declared. The
    given names are the node's parameter overrides (rclpy keeps them in
    ``Node._parameter_overrides``, the only place they are listed, from Humble to Rolling); the
    declared ones come from ``node.list_parameters([], 0)``. One ``node.get_logger().warning``
    per unknown name: ``parameter 'slopp' is not a parameter of segmif_node and is ignored (did
    you mean 'slop'?)``.

    :returns: what :func:`unknown_parameters` returns (the names warned).
    """
    given = getattr(node, "_parameter_overrides", {}) or {}
    declared = node.list_parameters([], 0).names
    unknown = unknown_parameters(given, declared)
    for name, close in unknown.items():
        hint = f" (did you mean {close!r}?)" if close else ""
        node.get_logger().warning(
            f"parameter {name!r} is not a parameter of {node_name} and is ignored{hint}; "
            f"`ros2 param list` shows the parameters")
    return unknown
