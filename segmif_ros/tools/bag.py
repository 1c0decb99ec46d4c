"""Write and read rosbag2 recordings of visible/thermal (+ ground truth) image streams.

Built on the pure-Python ``rosbags`` library (no rosbag2 / rclpy needed; this module never
imports rclpy). Two storage formats are supported: ``mcap`` (default) and ``sqlite3``; bags are
rosbag2 format version 9 and can be read by ``ros2 bag`` as well.

Main entry points:

* :func:`make_bag` turns a folder ``DIR/{vis,ir,label}/NAME.png`` (MFNet layout) into a bag that
  looks like a synchronised-but-not-exactly camera pair: the visible camera at a fixed rate, the
  thermal camera with a small random stamp jitter, the ground truth labels with exactly the
  visible stamp.
* :func:`read_bag` / :func:`read_bag_raw` iterate over the messages (deserialised ``rosbags``
  dataclasses or raw CDR bytes), :func:`bag_info` summarises a bag.
* :func:`get_typestore` returns the ``rosbags`` type store used everywhere in segmif: the ROS 2
  Kilted types plus the project's own messages from ``msg/*.msg`` (``segmif_ros/msg/...``).

Time stamps are integers in nanoseconds since the Unix epoch throughout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from segmif_core.data.layouts import IMAGE_EXTENSIONS, find_image, strip_image_extension

__all__ = [
    "BagMessage",
    "RawBagMessage",
    "DEFAULT_START_NS",
    "STORAGES",
    "custom_msg_dirs",
    "get_typestore",
    "make_bag",
    "read_bag",
    "read_bag_raw",
    "bag_info",
    "finalize_atomically",
]

#: Default time of the first visible frame written by :func:`make_bag`: 2023-11-14T22:13:20Z (ns).
DEFAULT_START_NS: int = 1_700_000_000 * 1_000_000_000
#: Storage plugins understood by :func:`make_bag` and :class:`segmif_ros.tools.recorder.BagRecorder`.
STORAGES: Tuple[str, ...] = ("mcap", "sqlite3")
#: rosbag2 metadata format version written by this module.
BAG_VERSION = 9

_PACKAGE = "segmif_ros"
_IMAGE_TYPE = "sensor_msgs/msg/Image"
_NS_PER_S = 1_000_000_000

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


def _reliable_qos():
    """QoS recorded as 'offered' for make_bag topics: reliable, volatile, keep last 10."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(
        QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
        zero, zero, QosLiveliness.AUTOMATIC, zero, False,
    )


# --------------------------------------------------------------------------- input images


def _read_names_file(path: Path) -> List[str]:
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(strip_image_extension(line))
    return names


def _resolve_names(data_dir: Path, names: Any) -> Tuple[List[str], bool]:
    """Return ``(names, explicit)``; explicit names must all exist."""
    if names is None:
        vis = {p.stem for p in (data_dir / "vis").iterdir()
               if p.suffix.lower() in IMAGE_EXTENSIONS} if (data_dir / "vis").is_dir() else set()
        ir = {n for n in vis if find_image(str(data_dir / "ir"), n, "ir")}
        return sorted(vis & ir), False
    if isinstance(names, (str, os.PathLike)):
        split = Path(names)
        if not split.is_file() and not split.is_absolute() and (data_dir / split).is_file():
            split = data_dir / split
        if not split.is_file():
            raise FileNotFoundError(f"split file {str(names)!r} not found (also looked in {str(data_dir)!r})")
        return _read_names_file(split), True
    listed = [str(n) for n in names]
    return [strip_image_extension(n) for n in listed], True


def _pair_file(data_dir: Path, sub: str, name: str) -> Optional[Path]:
    """``data_dir/sub/NAME.EXT`` for any accepted image extension (segmif_core.data.layouts),
    None if absent; DatasetError (a ValueError) for two files of that stem or a JPEG label."""
    found = find_image(str(data_dir / sub), name, "label" if sub == "label" else sub)
    return Path(found) if found else None


def _imread(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read image {str(path)!r}")
    return img


def _load_visible(path: Path) -> np.ndarray:
    """PNG -> (H, W, 3) uint8 RGB."""
    import cv2

    img = _imread(path)
    if img.dtype != np.uint8:
        raise ValueError(f"visible image {str(path)!r} must be 8-bit, got {img.dtype}")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"visible image {str(path)!r} has unsupported shape {img.shape}")


def _single_channel(img: np.ndarray, path: Path, what: str) -> np.ndarray:
    if img.ndim == 3:
        if img.shape[2] >= 3 and all(np.array_equal(img[:, :, 0], img[:, :, c]) for c in (1, 2)):
            return np.ascontiguousarray(img[:, :, 0])  # grey stored as equal colour channels
        if img.shape[2] == 1:
            return np.ascontiguousarray(img[:, :, 0])
        raise ValueError(f"{what} image {str(path)!r} must be single channel, got shape {img.shape}")
    return img


def _load_thermal(path: Path) -> Tuple[np.ndarray, str]:
    """PNG -> ((H, W) uint8 or uint16, 'mono8' | 'mono16')."""
    img = _single_channel(_imread(path), path, "thermal")
    if img.dtype == np.uint8:
        return img, "mono8"
    if img.dtype == np.uint16:
        return img, "mono16"
    raise ValueError(f"thermal image {str(path)!r} must be 8- or 16-bit, got {img.dtype}")


def _load_label(path: Path) -> np.ndarray:
    img = _single_channel(_imread(path), path, "label")
    if img.dtype != np.uint8:
        raise ValueError(f"label image {str(path)!r} must be uint8 class ids, got {img.dtype}")
    return img


def _stamp(store: Any, ns: int):
    Time = store.types["builtin_interfaces/msg/Time"]
    return Time(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


def _image_msg(store: Any, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """numpy array -> rosbags ``sensor_msgs/msg/Image`` (little-endian, unpadded rows)."""
    Image = store.types[_IMAGE_TYPE]
    Header = store.types["std_msgs/msg/Header"]
    height, width = int(array.shape[0]), int(array.shape[1])
    if array.dtype == np.uint16:
        data = np.ascontiguousarray(array, dtype="<u2").view(np.uint8).reshape(-1)
    else:
        data = np.ascontiguousarray(array, dtype=np.uint8).reshape(-1)
    return Image(
        header=Header(stamp=_stamp(store, stamp_ns), frame_id=frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=data.size // height if height else 0,
        data=data,
    )


# --------------------------------------------------------------------------- make_bag


def make_bag(
    data_dir: PathLike,
    out: PathLike,
    names: Union[None, PathLike, Sequence[str]] = None,
    *,
    rate_hz: float = 30.0,
    jitter_ms: float = 3.0,
    seed: int = 0,
    storage: str = "mcap",
    start_ns: int = DEFAULT_START_NS,
    visible_topic: str = "/visible/image",
    thermal_topic: str = "/thermal/image",
    label_topic: str = "/ground_truth/labels",
    visible_frame: str = "visible_camera",
    thermal_frame: str = "thermal_camera",
    include_labels: bool = True,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Write a rosbag2 replaying the image pairs of ``data_dir`` as a live camera rig would.

    Input layout: ``data_dir/vis/NAME.png`` (visible, 8-bit colour or grey),
    ``data_dir/ir/NAME.png`` (thermal, 8- or 16-bit single channel; 3-channel PNGs with equal
    channels are accepted) and optionally ``data_dir/label/NAME.png`` (uint8 class ids).

    Pair ``i`` (0-based, in the order of ``names``) produces:

    * ``visible_topic``: ``sensor_msgs/msg/Image`` ``rgb8`` (H, W, 3), header stamp =
      bag timestamp = ``t_i = start_ns + round(i * 1e9 / rate_hz)``, frame ``visible_frame``;
    * ``thermal_topic``: ``mono8`` (8-bit PNG) or ``mono16`` (16-bit PNG), stamp = bag
      timestamp = ``t_i + d_i`` with ``d_i`` drawn uniformly from
      ``[-jitter_ms, +jitter_ms]`` (``numpy.random.default_rng(seed)``, truncated to whole ns,
      so ``|d_i| <= jitter_ms``), frame ``thermal_frame``;
    * ``label_topic`` (only when ``include_labels`` and ``label/NAME.png`` exists): ``mono8``
      class ids with exactly stamp ``t_i`` and frame ``visible_frame``.

    Messages are written in bag-timestamp order. The bag is built in a hidden temporary folder
    next to ``out`` and renamed to ``out`` only when complete.

    :param data_dir: folder with ``vis/`` and ``ir/`` (and optionally ``label/``).
    :param out: bag folder to create (must not exist unless ``overwrite``).
    :param names: ``None`` = every name present in both ``vis/`` and ``ir/`` (sorted); a path to
        a split file (one name per line, ``#`` comments; relative paths are also looked up in
        ``data_dir``) or a sequence of names — every listed name must have both images.
    :param rate_hz: visible frame rate, > 0.
    :param jitter_ms: maximum absolute thermal stamp offset in ms, >= 0.
    :param seed: seed of the jitter generator (same seed -> same bag content).
    :param storage: ``"mcap"`` or ``"sqlite3"``.
    :param start_ns: stamp of the first visible frame, ns since the epoch; must be
        ``>= jitter`` so no stamp is negative.
    :returns: summary dict: ``path`` (str), ``storage``, ``names`` (list), ``num_pairs``,
        ``num_labels``, ``counts`` ({topic: messages}), ``start_ns``/``end_ns`` (first/last bag
        timestamp), ``duration_ns``, ``rate_hz``, ``jitter_ms``, ``seed``, ``visible_stamps_ns``
        and ``thermal_stamps_ns`` (lists, one per pair), ``width``/``height`` of the first pair.
    :raises FileNotFoundError: ``data_dir``, ``vis/`` or ``ir/`` missing, split file missing, or
        a listed name lacking its visible or thermal PNG (the message names the file).
    :raises FileExistsError: ``out`` exists and ``overwrite`` is false.
    :raises ValueError: no pairs, bad parameters, unreadable image, visible/thermal (or label)
        size mismatch within a pair (the message names the pair and both sizes), wrong dtype.
    """
    from rosbags.rosbag2 import Writer

    data_dir = Path(data_dir)
    out = Path(out)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {str(data_dir)!r} does not exist")
    for sub in ("vis", "ir"):
        if not (data_dir / sub).is_dir():
            raise FileNotFoundError(f"data directory {str(data_dir)!r} has no {sub}/ folder")
    if not (rate_hz > 0 and np.isfinite(rate_hz)):
        raise ValueError(f"rate_hz must be a positive finite number, got {rate_hz!r}")
    if not (jitter_ms >= 0 and np.isfinite(jitter_ms)):
        raise ValueError(f"jitter_ms must be a non-negative finite number, got {jitter_ms!r}")
    plugin = _storage_plugin(storage)
    jitter_ns = int(round(jitter_ms * 1e6))
    start_ns = int(start_ns)
    if start_ns < jitter_ns:
        raise ValueError(f"start_ns ({start_ns}) must be >= the jitter ({jitter_ns} ns)")

    pair_names, explicit = _resolve_names(data_dir, names)
    if not pair_names:
        raise ValueError(f"no visible/thermal pairs found in {str(data_dir)!r} (vis/NAME.EXT with a matching ir/NAME.EXT; png, jpg, bmp, tif)")
    if explicit:
        for name in pair_names:
            for sub in ("vis", "ir"):
                if _pair_file(data_dir, sub, name) is None:
                    raise FileNotFoundError(f"pair {name!r}: missing file "
                                            f"{str(data_dir / sub / (name + '.png'))!r} "
                                            "(or .jpg, .jpeg, .bmp, .tif, .tiff)")
    label_dir = data_dir / "label"

    n = len(pair_names)
    rng = np.random.default_rng(seed)
    offsets = np.trunc(rng.uniform(-jitter_ms, jitter_ms, size=n) * 1e6).astype(np.int64) if n else []
    vis_stamps = [start_ns + int(round(i * 1e9 / rate_hz)) for i in range(n)]
    ir_stamps = [v + int(o) for v, o in zip(vis_stamps, offsets)]

    store = get_typestore()
    tmp_parent, tmp_bag = _prepare_tmp(out, overwrite)
    counts = {visible_topic: 0, thermal_topic: 0}
    num_labels = 0
    size: Optional[Tuple[int, int]] = None
    try:
        writer = Writer(tmp_bag, version=BAG_VERSION, storage_plugin=plugin)
        writer.open()
        try:
            qos = [_reliable_qos()]
            conns = {}
            topics = [visible_topic, thermal_topic]
            if include_labels and label_dir.is_dir():
                topics.append(label_topic)
                counts[label_topic] = 0
            for topic in topics:
                conns[topic] = writer.add_connection(
                    topic, _IMAGE_TYPE, typestore=store, offered_qos_profiles=qos
                )

            # events (timestamp, seq, topic, msg) are released once no later pair can precede them
            heap: List[Tuple[int, int, str, Any]] = []
            seq = itertools.count()

            def flush(limit: Optional[int]) -> None:
                while heap and (limit is None or heap[0][0] < limit):
                    stamp, _, topic, msg = heapq.heappop(heap)
                    writer.write(conns[topic], stamp, store.serialize_cdr(msg, _IMAGE_TYPE))
                    counts[topic] += 1

            for i, name in enumerate(pair_names):
                vis_path = _pair_file(data_dir, "vis", name)
                ir_path = _pair_file(data_dir, "ir", name)
                vis = _load_visible(vis_path)
                ir, ir_encoding = _load_thermal(ir_path)
                if vis.shape[:2] != ir.shape[:2]:
                    raise ValueError(
                        f"pair {name!r}: visible {vis.shape[1]}x{vis.shape[0]} ({str(vis_path)!r}) and thermal "
                        f"{ir.shape[1]}x{ir.shape[0]} ({str(ir_path)!r}) differ in size (WxH)"
                    )
                if size is None:
                    size = (int(vis.shape[1]), int(vis.shape[0]))
                heapq.heappush(heap, (vis_stamps[i], next(seq), visible_topic,
                                      _image_msg(store, vis, "rgb8", vis_stamps[i], visible_frame)))
                label_path = _pair_file(data_dir, "label", name) if label_topic in conns else None
                if label_path is not None:
                    label = _load_label(label_path)
                    if label.shape != vis.shape[:2]:
                        raise ValueError(
                            f"pair {name!r}: label {label.shape[1]}x{label.shape[0]} ({str(label_path)!r}) and "
                            f"visible {vis.shape[1]}x{vis.shape[0]} differ in size (WxH)"
                        )
                    heapq.heappush(heap, (vis_stamps[i], next(seq), label_topic,
                                          _image_msg(store, label, "mono8", vis_stamps[i], visible_frame)))
                    num_labels += 1
                heapq.heappush(heap, (ir_stamps[i], next(seq), thermal_topic,
                                      _image_msg(store, ir, ir_encoding, ir_stamps[i], thermal_frame)))
                if i + 1 < n:
                    flush(vis_stamps[i + 1] - jitter_ns)
            flush(None)
        except BaseException:
            with contextlib.suppress(Exception):
                writer.abort()
            raise
        writer.close()
        final = finalize_atomically(tmp_parent, tmp_bag, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp_parent, ignore_errors=True)
        raise

    all_stamps = vis_stamps + ir_stamps
    return {
        "path": str(final),
        "storage": storage,
        "names": list(pair_names),
        "num_pairs": n,
        "num_labels": num_labels,
        "counts": dict(counts),
        "start_ns": min(all_stamps),
        "end_ns": max(all_stamps),
        "duration_ns": max(all_stamps) - min(all_stamps),
        "rate_hz": float(rate_hz),
        "jitter_ms": float(jitter_ms),
        "seed": seed,
        "visible_stamps_ns": vis_stamps,
        "thermal_stamps_ns": ir_stamps,
        "width": size[0] if size else 0,
        "height": size[1] if size else 0,
    }


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
