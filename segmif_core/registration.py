"""Thermal-to-visible registration by a fixed homography, then a common crop.

This mirrors the FMB capture rig (Liu et al., ICCV 2023, Sec. 4): the thermal image is projected
onto the visible camera with a homography (estimated offline, e.g. by RANSAC on matched points),
then both images are cropped to the region they share.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

MIN_ABS_DET = 1e-6
MAX_CONDITION = 1e10
_DTYPES = (np.uint8, np.uint16, np.float32)


class RegistrationError(ValueError):
    """Invalid homography or crop, or an image the registration cannot handle."""


class Registration:
    """Fixed thermal -> visible homography followed by an optional crop.

    Args:
        homography: 3x3 array-like or 9 floats row-major, mapping thermal pixel coordinates
            (x, y, 1) to visible pixel coordinates (OpenCV convention, pixel centres at integers).
            Normalised so that ``H[2, 2] == 1``. ``None`` = identity.
        out_size: (width, height) in pixels of the warped thermal image; ``None`` = the visible
            image's size.
        crop: (x, y, width, height) in pixels, applied to both images after warping; ``None`` or
            (0, 0, 0, 0) = no crop.
    Raises:
        RegistrationError: matrix not 3x3 / 9 values, not finite, ``H[2,2] == 0``, singular
            (``|det| < MIN_ABS_DET``) or ill-conditioned (condition number > ``MAX_CONDITION``);
            out_size not two positive ints; crop not 4 ints with x, y >= 0, width, height > 0,
            or not inside ``out_size`` when that is given.
    """

    def __init__(self, homography=None, out_size: Sequence[int] | None = None,
                 crop: Sequence[int] | None = None):
        h = np.eye(3) if homography is None else np.asarray(homography, dtype=np.float64)
        if h.shape not in ((9,), (3, 3)):
            raise RegistrationError(f"homography must be 3x3 or 9 values, got shape {h.shape}")
        h = h.reshape(3, 3)
        if not np.isfinite(h).all():
            raise RegistrationError(f"homography has non-finite values: {h.tolist()}")
        if abs(h[2, 2]) < 1e-12:
            raise RegistrationError("homography H[2,2] is 0 (maps the origin to infinity)")
        h = h / h[2, 2]
        det, cond = np.linalg.det(h), np.linalg.cond(h)
        if abs(det) < MIN_ABS_DET or not cond <= MAX_CONDITION:
            raise RegistrationError(f"homography is singular or ill-conditioned (det {det:.3g}, "
                                    f"condition number {cond:.3g}): {h.tolist()}")
        self.homography = h
        self.is_identity = bool(np.allclose(h, np.eye(3), rtol=0.0, atol=1e-12))
        self.out_size = None
        if out_size is not None:
            if len(out_size) != 2 or min(out_size) < 1 or any(int(v) != v for v in out_size):
                raise RegistrationError(f"out_size must be (width, height) > 0, got {out_size}")
            self.out_size = (int(out_size[0]), int(out_size[1]))
        self.crop_box = None
        if crop is not None:
            if len(crop) != 4 or any(int(v) != v for v in crop):
                raise RegistrationError(f"crop must be 4 integers (x, y, width, height), "
                                        f"got {crop}")
            box = tuple(int(v) for v in crop)
            if any(box):
                if box[0] < 0 or box[1] < 0 or box[2] < 1 or box[3] < 1:
                    raise RegistrationError(f"crop needs x, y >= 0 and width, height > 0, "
                                            f"got {crop}")
                self.crop_box = box
                if self.out_size is not None:
                    self._check_crop(self.out_size[1], self.out_size[0])

    def _check_crop(self, height: int, width: int) -> None:
        x, y, w, h = self.crop_box
        if x + w > width or y + h > height:
            raise RegistrationError(f"crop (x {x}, y {y}, w {w}, h {h}) exceeds the image "
                                    f"{width}x{height} (WxH)")

    def warp_thermal(self, ir: np.ndarray, visible_shape: Sequence[int]) -> np.ndarray:
        """Project the thermal image onto the visible camera.

        Bilinear interpolation, pixels mapped from outside the thermal image are 0. With an
        identity homography and equal sizes the input array itself is returned (no copy).

        Args:
            ir: HxW or HxWxC thermal image, uint8, uint16 or float32.
            visible_shape: shape of the visible image, (H, W) or (H, W, C); sets the output size
                unless ``out_size`` was given.
        Returns:
            thermal image of size ``out_size`` (or the visible size), same dtype and channels.
        Raises:
            RegistrationError: unsupported dtype or dimensions.
        """
        ir = np.asarray(ir)
        if ir.dtype not in _DTYPES or ir.ndim not in (2, 3) or ir.size == 0:
            raise RegistrationError(f"thermal image must be HxW[xC] uint8/uint16/float32, got "
                                    f"shape {ir.shape} dtype {ir.dtype}")
        w, h = self.out_size or (int(visible_shape[1]), int(visible_shape[0]))
        if self.is_identity and ir.shape[:2] == (h, w):
            return ir
        return cv2.warpPerspective(ir, self.homography, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def warp_thermal_torch(self, ir, visible_hw: Sequence[int]):
        """:meth:`warp_thermal` on a torch tensor, on its device (the GPU path of
        ``inference.backends.TorchBackend``): ``ir`` (B, C, h, w) float -> (B, C, H, W) at
        ``out_size`` or ``visible_hw`` (H, W), bilinear, zeros outside (kornia's
        warp_perspective, pixel centres at integers as in OpenCV). Identity and equal sizes
        return ``ir`` itself."""
        import torch
        from kornia.geometry.transform import warp_perspective

        w, h = self.out_size or (int(visible_hw[1]), int(visible_hw[0]))
        if self.is_identity and tuple(ir.shape[-2:]) == (h, w):
            return ir
        m = torch.as_tensor(self.homography, dtype=ir.dtype, device=ir.device)[None]
        return warp_perspective(ir, m.expand(ir.shape[0], 3, 3), (h, w), mode="bilinear",
                                padding_mode="zeros", align_corners=True)

    def crop_torch(self, img):
        """:meth:`crop` on a (B, C, H, W) tensor (a view; RegistrationError if it does not fit)."""
        if self.crop_box is None:
            return img
        self._check_crop(img.shape[-2], img.shape[-1])
        x, y, w, h = self.crop_box
        return img[..., y:y + h, x:x + w]

    def crop(self, img: np.ndarray) -> np.ndarray:
        """Apply the crop to any image (HxW or HxWxC); returns ``img`` unchanged without a crop,
        otherwise a contiguous array of ``height x width``.

        Raises:
            RegistrationError: the crop does not fit in the image.
        """
        if self.crop_box is None:
            return img
        self._check_crop(img.shape[0], img.shape[1])
        x, y, w, h = self.crop_box
        return np.ascontiguousarray(img[y:y + h, x:x + w])

    def register(self, vis: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp ``ir`` onto ``vis`` and crop both identically; returns ``(vis, ir)``.

        Raises:
            RegistrationError: as :meth:`warp_thermal` and :meth:`crop`, or if ``out_size`` differs
                from the visible image size.
        """
        if self.out_size is not None and self.out_size != (vis.shape[1], vis.shape[0]):
            raise RegistrationError(f"out_size {self.out_size} (WxH) differs from the visible "
                                    f"image {vis.shape[1]}x{vis.shape[0]}")
        return self.crop(vis), self.crop(self.warp_thermal(ir, vis.shape))
