"""segmif_core: SegMiF (Liu et al., ICCV 2023) models, data, training, metrics and inference.

Never imports ROS. Needs only torch, transformers, numpy, opencv and pyyaml.
"""
