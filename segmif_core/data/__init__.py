"""Datasets, class sets and thermal normalisation."""
from .classes import FMB_CLASSES, MFNET_CLASSES, ClassSet, get_class_set
from .pairs import DatasetError, PairDataset, augment_pair, check_pairs, list_pairs, read_pair
from .images import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, find_image
from .layouts import Layout, detect_layout, get_layout
from .thermal import normalize_thermal, to_uint8

__all__ = ["ClassSet", "MFNET_CLASSES", "FMB_CLASSES", "get_class_set", "normalize_thermal",
           "to_uint8", "DatasetError", "list_pairs", "check_pairs", "read_pair", "augment_pair",
           "PairDataset", "Layout", "get_layout", "detect_layout", "IMAGE_EXTENSIONS",
           "LABEL_EXTENSIONS", "find_image"]
