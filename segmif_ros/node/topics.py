"""The input topic names of segmif_node, by image_transport's conventions (no rclpy here).

The node asks for relative names (:data:`IMAGE`, :data:`CAMERA_INFO`), which remapping
(``-r visible/image:=/camera/color/image_raw``, or launch's ``visible_topic``) and the node's
namespace resolve. From the resolved names, as image_transport's ``CameraSubscriber`` and its
transports do:

* a camera's CameraInfo is the *sibling* of its image topic: the image topic's namespace +
  ``camera_info`` (``/camera/color/image_raw`` -> ``/camera/color/camera_info``), for the raw
  and the compressed transport alike (the base image topic counts, not ``.../compressed``);
* the compressed transport's topic is the base image topic + ``/compressed``
  (``/camera/color/image_raw/compressed``).

A name remapped explicitly (``-r visible/camera_info:=/rig/left/info``, or
``visible/image/compressed:=...``) is taken as it is, so a driver that does not follow the
convention can still be connected.
"""
from __future__ import annotations

from typing import Callable, Dict

#: the image topics the node asks for, per stream (relative: remapped and put in the namespace)
IMAGE = {"visible": "visible/image", "thermal": "thermal/image"}
#: the CameraInfo topic the node asks for (visible camera only: the outputs are in its frame)
CAMERA_INFO = "visible/camera_info"
#: the compressed transport's suffix (image_transport: ``<base topic>/compressed``)
COMPRESSED = "/compressed"


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic of ``image_topic`` (a base image topic, absolute or relative): its
    sibling ``camera_info``. ``/camera/color/image_raw`` -> ``/camera/color/camera_info``,
    ``front/image`` -> ``front/camera_info``, ``image`` -> ``camera_info``,
    ``/image`` -> ``/camera_info``.

    :raises ValueError: an empty topic name.
    """
    name = image_topic.rstrip("/")
    if not name:
        raise ValueError(f"no camera_info topic for the image topic {image_topic!r}")
    head, sep, _ = name.rpartition("/")
    return head + sep + "camera_info"


def base_image_topic(topic: str) -> str:
    """The base image topic of a transport topic: ``.../image_raw/compressed`` ->
    ``.../image_raw``; a topic without the suffix is returned unchanged."""
    return topic[:-len(COMPRESSED)] if topic.endswith(COMPRESSED) else topic


def node_input_names() -> set:
    """Every relative name the node resolves for its inputs (the names launch remaps)."""
    return ({*IMAGE.values()} | {n + COMPRESSED for n in IMAGE.values()} | {CAMERA_INFO})


def input_topics(resolve: Callable[..., str], compressed: bool) -> Dict[str, str]:
    """The fully qualified input topics of the node.

    Args:
        resolve: ``resolve(name, only_expand=False)``, rclpy's ``Node.resolve_topic_name``:
            the name expanded in the node's namespace and, unless ``only_expand``, remapped.
        compressed: ``input_transport: compressed``.
    Returns ``{"visible": topic, "thermal": topic, "camera_info": topic}``: the image topics
    to subscribe to (the compressed transport's with ``compressed``) and the visible camera's
    CameraInfo topic (see the module docstring).
    """
    def remapped(name: str) -> bool:
        return resolve(name) != resolve(name, only_expand=True)

    out, base = {}, {}
    for stream, name in IMAGE.items():
        raw = resolve(name)
        if not compressed:
            out[stream] = base[stream] = raw
            continue
        transport = name + COMPRESSED
        out[stream] = resolve(transport) if remapped(transport) else raw + COMPRESSED
        base[stream] = base_image_topic(out[stream])
    out["camera_info"] = (resolve(CAMERA_INFO) if remapped(CAMERA_INFO)
                          else camera_info_topic(base["visible"]))
    return out
