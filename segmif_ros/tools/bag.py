"""Read rosbag2 recordings and write them atomically; the type store of every segmif bag.

Built on the pure-Python ``rosbags`` library (no rosbag2 / rclpy needed; this module never
imports rclpy). Two storage formats are supported: ``mcap`` (default) and ``sqlite3``; bags are
rosbag2 format version 9 and can be read by ``ros2 bag`` as well.

Main entry points:

* :func:`read_bag` / :func:`read_bag_raw` iterate over the messages (deserialised ``rosbags``
  dataclasses or raw CDR bytes), :func:`bag_info` summarises a bag.
* :func:`get_typestore` returns the ``rosbags`` type store used everywhere in segmif: the ROS 2
  Kilted types plus the project's own messages from ``msg/*.msg`` (``segmif_ros/msg/...``).
* :func:`finalize_atomically` (with ``_prepare_tmp``, ``_storage_plugin``): the bag writers
  (:func:`segmif_ros.tools.bag_make.make_bag`, :class:`segmif_ros.tools.recorder.BagRecorder`)
  write into a hidden temporary folder and rename it to the final name when complete.

Time stamps are integers in nanoseconds since the Unix epoch throughout.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

__all__ = [
    "BagMessage",
    "RawBagMessage",
    "STORAGES",
    "custom_msg_dirs",
    "get_typestore",
    "read_bag",
    "read_bag_raw",
    "bag_info",
    "finalize_atomically",
]

#: Storage plugins understood by :func:`segmif_ros.tools.bag_make.make_bag` and
#: :class:`segmif_ros.tools.recorder.BagRecorder`.
STORAGES: Tuple[str, ...] = ("mcap", "sqlite3")
#: rosbag2 metadata format version written by the segmif bag writers.
BAG_VERSION = 9

_PACKAGE = "segmif_ros"

PathLike = Union[str, "os.PathLike[str]"]


class BagMessage(NamedTuple):
    """One message yielded by :func:`read_bag` (unpacks as ``topic, timestamp_ns, msg``)."""

    topic: str
    timestamp_ns: int  #: bag (receive/log) time, ns since the epoch
    msg: Any  #: deserialised ``rosbags`` dataclass (e.g. ``sensor_msgs__msg__Image``)


class RawBagMessage(NamedTuple):
    """One message yielded by :func:`read_bag_raw`."""

    topic: str
    timestamp_ns: int  #: bag (receive/log) time, ns since the epoch
    data: bytes  #: serialised message, CDR (with its 4-byte encapsulation header)
    msgtype: str  #: e.g. ``"sensor_msgs/msg/Image"``


# --------------------------------------------------------------------------- type store


def custom_msg_dirs() -> List[Path]:
    """Folders holding the project's ``*.msg`` files, best first (may be empty).

    Looks at ``<repo>/msg`` next to the ``segmif_ros`` package folder (source checkout) and at
    ``share/segmif_ros/msg`` of an installed ament package (via ``ament_index_python`` when it is
    importable and the package is installed). Duplicates are removed.
    """
    found: List[Path] = []
    source = Path(__file__).resolve().parents[2] / "msg"
    if source.is_dir():
        found.append(source)
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory(_PACKAGE)) / "msg"
    except Exception:  # not installed, no ament index, ... : the source folder is enough
        share = None
    # an install prefix without AMENT_PREFIX_PATH set (e.g. .venv/bin/segmif run directly)
    prefix_share = Path(sys.prefix) / "share" / _PACKAGE / "msg"
    for cand in (share, prefix_share):
        if cand is not None and cand.is_dir() and cand.resolve() not in [p.resolve() for p in found]:
            found.append(cand)
    return found


_CUSTOM_TYPES_CACHE: Optional[Dict[str, Any]] = None


def _custom_types() -> Dict[str, Any]:
    """Parsed ``segmif_ros/msg/*`` definitions (rosbags ``Typesdict``), cached."""
    global _CUSTOM_TYPES_CACHE
    if _CUSTOM_TYPES_CACHE is None:
        from rosbags.typesys import get_types_from_msg

        types: Dict[str, Any] = {}
        for folder in custom_msg_dirs():
            for path in sorted(folder.glob("*.msg")):
                name = f"{_PACKAGE}/msg/{path.stem}"
                if name not in types:  # first folder wins (source checkout over install)
                    types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        _CUSTOM_TYPES_CACHE = types
    return dict(_CUSTOM_TYPES_CACHE)


def get_typestore():
    """A fresh ``rosbags`` ``Typestore`` with the ROS 2 Kilted types and segmif's own messages.

    ``Stores.ROS2_KILTED`` is used because it matches the ROS 2 distribution of the installed
    rclpy wheels (it is also what ``rosbags``' ``Stores.LATEST`` resolves to). The project's
    messages (``segmif_ros/msg/VisionClass``, ``LabelInfo``, ``SegmentationInfo``) are parsed
    from the folders returned by :func:`custom_msg_dirs`; when none is found only the standard
    types are available. Each call returns a new object, so callers may register more types.

    :raises rosbags.typesys.TypesysError: if a project ``.msg`` file cannot be parsed.
    """
    from rosbags.typesys import Stores, get_typestore as _get

    store = _get(Stores.ROS2_KILTED)
    custom = _custom_types()
    if custom:
        store.register(custom)
    return store


def _register_bag_types(store: Any, connections: Iterable[Any]) -> None:
    """Register types that a bag carries definitions for but ``store`` does not know."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    for conn in connections:
        if conn.msgtype in store.fielddefs:
            continue
        fmt, text = conn.msgdef.format, conn.msgdef.data
        try:
            if fmt == MessageDefinitionFormat.MSG:
                store.register(get_types_from_msg(text, conn.msgtype))
            elif fmt == MessageDefinitionFormat.IDL:
                sep = "=" * 80 + "\n"
                types: Dict[str, Any] = {}
                parts = text.split(sep)[1:] if text.startswith(sep + "IDL: ") else [text]
                for part in parts:
                    idl = part.split("\n", 1)[1] if part.startswith("IDL: ") else part
                    types.update(get_types_from_idl(idl))
                store.register(types)
        except Exception:  # unknown/garbled definition: left unregistered, fails on deserialise
            continue


# --------------------------------------------------------------------------- atomic output


def _prepare_tmp(out: Path, overwrite: bool) -> Tuple[Path, Path]:
    """Check ``out`` and create ``(tmp_parent, tmp_bag)`` next to it; ``tmp_bag`` not created."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"bag output {str(out)!r} exists already (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_parent = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    # same basename as the final bag so that the storage file is named <out.name>_0.<ext>
    return tmp_parent, tmp_parent / out.name


def finalize_atomically(tmp_parent: PathLike, tmp_bag: PathLike, out: PathLike, overwrite: bool) -> Path:
    """Move a finished bag folder ``tmp_bag`` (inside ``tmp_parent``) to ``out`` and clean up.

    The final step is one ``os.rename`` on the same file system, so readers see either no bag
    or the complete one. With ``overwrite`` an existing ``out`` is first moved into
    ``tmp_parent`` and deleted afterwards.

    :returns: ``Path(out)``.
    :raises FileExistsError: if ``out`` exists and ``overwrite`` is false (``tmp_bag`` is kept).
    """
    tmp_parent, tmp_bag, out = Path(tmp_parent), Path(tmp_bag), Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"bag output {str(out)!r} appeared while writing; finished bag left in {str(tmp_bag)!r}"
            )
        os.rename(out, tmp_parent / (".old." + out.name))
    os.rename(tmp_bag, out)
    shutil.rmtree(tmp_parent, ignore_errors=True)
    return out


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    if storage == "mcap":
        return StoragePlugin.MCAP
    if storage == "sqlite3":
        return StoragePlugin.SQLITE3
    raise ValueError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")


# --------------------------------------------------------------------------- reading


def _open_reader(path: PathLike):
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag {str(path)!r} does not exist")
    reader = Reader(path)
    reader.open()
    return reader


def _select(reader: Any, topics: Optional[Iterable[str]]) -> List[Any]:
    if topics is None:
        return list(reader.connections)
    wanted = [topics] if isinstance(topics, str) else list(topics)
    present = {c.topic for c in reader.connections}
    missing = [t for t in wanted if t not in present]
    if missing:
        raise ValueError(f"topics {missing} not in bag; available: {sorted(present)}")
    return [c for c in reader.connections if c.topic in set(wanted)]


def read_bag_raw(path: PathLike, topics: Optional[Iterable[str]] = None) -> Iterator[RawBagMessage]:
    """Iterate over the serialised messages of a bag in bag-timestamp order.

    :param path: bag folder (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file.
    :param topics: topic names to keep (``None`` = all).
    :returns: iterator of :class:`RawBagMessage` ``(topic, timestamp_ns, data, msgtype)``; ``data``
        is the CDR byte string as stored (usable with ``rclpy.serialization.deserialize_message``).
    :raises FileNotFoundError: the bag does not exist.
    :raises ValueError: a requested topic is not in the bag.
    :raises rosbags.rosbag2.ReaderError: unreadable bag.
    """
    reader = _open_reader(path)
    try:
        conns = _select(reader, topics)
        if not conns:
            return
        for conn, timestamp, data in reader.messages(connections=conns):
            yield RawBagMessage(conn.topic, int(timestamp), bytes(data), conn.msgtype)
    finally:
        reader.close()


def read_bag(path: PathLike, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
    """Iterate over the deserialised messages of a bag in bag-timestamp order.

    Messages are ``rosbags`` dataclasses from :func:`get_typestore` (e.g. an Image has
    ``header.stamp.sec/nanosec``, ``height``, ``width``, ``encoding``, ``step`` and ``data`` as a
    1-D ``uint8`` numpy array). Types unknown to the store are registered from the definitions
    stored in the bag when it has them.

    :param path: bag folder or single ``.mcap`` / ``.db3`` file.
    :param topics: topic names to keep (``None`` = all).
    :returns: iterator of :class:`BagMessage` ``(topic, timestamp_ns, msg)``.
    :raises FileNotFoundError: the bag does not exist.
    :raises ValueError: a requested topic is not in the bag.
    :raises KeyError: a message type neither known nor defined in the bag.
    """
    reader = _open_reader(path)
    try:
        conns = _select(reader, topics)
        if not conns:
            return
        store = get_typestore()
        _register_bag_types(store, conns)
        for conn, timestamp, data in reader.messages(connections=conns):
            yield BagMessage(conn.topic, int(timestamp), store.deserialize_cdr(data, conn.msgtype))
    finally:
        reader.close()


def _storage_of(path: Path) -> Optional[str]:
    if path.is_dir():
        meta = path / "metadata.yaml"
        try:
            from ruamel.yaml import YAML

            info = YAML(typ="safe").load(meta.read_text(encoding="utf-8"))
            return info["rosbag2_bagfile_information"].get("storage_identifier")
        except Exception:
            return None
    return {".mcap": "mcap", ".db3": "sqlite3"}.get(path.suffix)


def bag_info(path: PathLike) -> Dict[str, Any]:
    """Summary of a bag (from its metadata; the messages are not read).

    :returns: dict with ``path``, ``storage`` (``"mcap"``/``"sqlite3"``/``None``),
        ``message_count``, ``start_ns`` / ``end_ns`` (first / last bag timestamp, ns; ``None``
        for an empty bag), ``duration_ns`` (``end_ns - start_ns``, 0 when empty), ``ros_distro``
        and ``topics``: ``{topic: {"type": str, "count": int}}``.
    :raises FileNotFoundError: the bag does not exist.
    :raises rosbags.rosbag2.ReaderError: unreadable bag.
    """
    reader = _open_reader(path)
    try:
        count = int(reader.message_count)
        topics = {
            name: {"type": info.msgtype, "count": int(info.msgcount)}
            for name, info in reader.topics.items()
        }
        start = int(reader.start_time) if count else None
        end = int(reader.end_time) - 1 if count else None  # rosbags' end_time is last + 1
        distro = reader.ros_distro
    finally:
        reader.close()
    return {
        "path": str(path),
        "storage": _storage_of(Path(path)),
        "message_count": count,
        "start_ns": start,
        "end_ns": end,
        "duration_ns": (end - start) if count else 0,
        "ros_distro": distro,
        "topics": topics,
    }
