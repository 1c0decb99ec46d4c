"""``segmif calibrate``: estimate the thermal -> visible homography of a rig and write the node's
``homography`` and ``crop`` parameters.

    segmif calibrate --vis IMG --ir IMG [--points FILE | --board COLSxROWS] --out config/my_rig.yaml
                     [--model affine|homography] [--ransac-px 3] [--no-crop]

Sources, in this order: ``--points`` (a correspondence file, rows ``x_ir, y_ir, x_vis, y_vis``
in pixels, CSV or YAML, see segmif_core/calibration.py) -> RANSAC; otherwise ``--board`` (inner
corners of a heated checkerboard visible in both images) -> RANSAC on its corners; otherwise (or
when the board is not found) gradient ECC on the image pair (segmif_core/calibration_auto.py).
Prints the homography, the reprojection error (RMS and max, visible pixels; correspondences
only), the edge alignment before/after and the crop, and writes OUT atomically (other
parameters of an existing OUT are kept). Needs no ROS.
"""
from __future__ import annotations

import sys

import numpy as np


def _board(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--board needs COLSxROWS inner corners, e.g. 9x6, got {text!r}") from None
    return cols, rows


def cmd_calibrate(args) -> int:
    from segmif_core.calibration import (checkerboard_points, estimate_homography, read_image,
                                         read_points, valid_crop, write_params)
    from segmif_core.calibration_auto import compare_alignment, estimate_ecc

    vis, ir = read_image(args.vis), read_image(args.ir)
    est = None
    if args.points:
        est = estimate_homography(read_points(args.points), args.ransac_px)
    elif args.board:
        pts = checkerboard_points(vis, ir, _board(args.board))
        if pts is None:
            print(f"[calibrate] no {args.board} checkerboard found in both images: falling back "
                  "to automatic alignment (gradient ECC)", file=sys.stderr)
        else:
            est = estimate_homography(pts, args.ransac_px, method="checkerboard")
    if est is None:
        est = estimate_ecc(vis, ir, model=args.model)
    h = est.homography
    ir_size, vis_size = (ir.shape[1], ir.shape[0]), (vis.shape[1], vis.shape[0])
    crop = [0, 0, 0, 0] if args.no_crop else valid_crop(h, ir_size, vis_size)
    np.set_printoptions(suppress=True, precision=6)
    print(f"[calibrate] method {est.method}" + (f" ({est.info['model']}, ECC correlation "
                                                f"{est.info['rho']:.3f})" if est.method == "ecc"
                                                else ""))
    if est.info.get("note"):
        print(f"[calibrate] {est.info['note']}")
    print(f"[calibrate] homography (thermal pixel -> visible pixel):\n{h}")
    if est.rms_px is not None:
        print(f"[calibrate] reprojection error over {est.info['n_inliers']} inliers of "
              f"{est.info['n_points']} points: RMS {est.rms_px:.3f} px, max {est.max_px:.3f} px "
              f"(RANSAC threshold {args.ransac_px:g} px)")
    else:
        print("[calibrate] reprojection error: none to report (no correspondences)")
    sc = compare_alignment(vis, ir, h)
    print(f"[calibrate] edge distance {sc['before']['edge_px']:.2f} px (identity) -> "
          f"{sc['after']['edge_px']:.2f} px; gradient correlation "
          f"{sc['before']['grad_ncc']:.3f} -> {sc['after']['grad_ncc']:.3f}")
    print(f"[calibrate] crop [x, y, width, height] = {crop}"
          + (" (--no-crop)" if args.no_crop else f" of the {vis_size[0]}x{vis_size[1]} image"))
    what = (f"{est.method}" + (f", RMS {est.rms_px:.3f} px, max {est.max_px:.3f} px"
                               if est.rms_px is not None else f", {est.info.get('model')}"))
    write_params(args.out, h, crop, comment=f"segmif calibrate --vis {args.vis} --ir {args.ir}: "
                 f"{what}\nLoad with: ros2 launch segmif_ros segmif.launch.py "
                 f"params_file:={args.out}")
    print(f"[calibrate] wrote {args.out}")
    return 0


def add_parser(sub) -> None:
    """Register ``segmif calibrate`` on the subparsers ``sub``."""
    p = sub.add_parser("calibrate", help="estimate the thermal -> visible homography and crop",
                       description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[2])
    p.add_argument("--vis", required=True, help="visible image of the rig")
    p.add_argument("--ir", required=True, help="thermal image taken at the same time")
    p.add_argument("--points", default=None,
                   help="correspondence file (.csv/.txt rows x_ir,y_ir,x_vis,y_vis, or .yaml "
                        "points: [[x_ir, y_ir, x_vis, y_vis], ...]), pixels")
    p.add_argument("--board", default=None, metavar="COLSxROWS",
                   help="inner corners of a heated checkerboard visible in both images")
    p.add_argument("--model", choices=("affine", "homography"), default="affine",
                   help="automatic alignment: final model (default affine, the more reliable "
                        "from one cross-modal pair; homography falls back to affine when its "
                        "projective terms move a corner more than 16 px)")
    p.add_argument("--ransac-px", type=float, default=3.0,
                   help="RANSAC inlier threshold, visible pixels (default 3)")
    p.add_argument("--no-crop", action="store_true", help="write crop [0, 0, 0, 0] (no crop)")
    p.add_argument("--out", required=True, help="parameter file to write, e.g. config/my_rig.yaml")
    p.set_defaults(func=cmd_calibrate)
