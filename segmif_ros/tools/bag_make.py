"""``segmif bag make``: a rosbag2 from a folder of visible/thermal (+ ground truth) image pairs.

:func:`make_bag` turns a folder ``DIR/{vis,ir,label}/NAME.png`` (MFNet layout; png, jpg/jpeg,
bmp, tif(f) by stem, see :mod:`segmif_core.data.layouts`) into a bag that looks like a
synchronised-but-not-exactly camera pair: the visible camera at a fixed rate, the thermal camera
with a small random stamp jitter, the ground truth labels with exactly the visible stamp.

Built on ``rosbags`` like :mod:`segmif_ros.tools.bag` (its type store, storage plugins and atomic
output); this module never imports rclpy. Time stamps are integers in nanoseconds since the Unix
epoch throughout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from segmif_core.data.images import IMAGE_EXTENSIONS, find_image, strip_image_extension

from .bag import (BAG_VERSION, PathLike, _prepare_tmp, _storage_plugin, finalize_atomically,
                  get_typestore)

__all__ = ["DEFAULT_START_NS", "make_bag"]

#: Default time of the first visible frame written by :func:`make_bag`: 2023-11-14T22:13:20Z (ns).
DEFAULT_START_NS: int = 1_700_000_000 * 1_000_000_000

_IMAGE_TYPE = "sensor_msgs/msg/Image"
_NS_PER_S = 1_000_000_000


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
