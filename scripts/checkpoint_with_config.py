"""A release checkpoint re-saved with some of its model config changed, for measuring an
inference-time option on trained weights (e.g. TSJNet's ``fusion_head: pyramid`` on a model
trained with the decoder head, or ``det_border_pad``):

    python scripts/checkpoint_with_config.py SRC.pt OUT.pt fusion_head=pyramid \
        pyramid_base=brighter pyramid_levels=5
    python scripts/checkpoint_with_config.py SRC.pt OUT.pt --input-size 336 448

Values are parsed as YAML (``5`` an int, ``[1, 2]`` a list). The weights are loaded into the
model built from the changed config with ``strict=True``, so a change that adds or removes
parameters (a different head) is refused (RuntimeError); an unknown or invalid key raises
ValueError. ``--input-size H W`` changes the network input size stored in the checkpoint (the
size the node and ``segmif evaluate`` use by default; the weights do not depend on it).
``meta`` gains ``config_changed`` (the changes), ``input_size_changed`` ([old, new], with
``--input-size``) and ``source`` (SRC's path); the file is written atomically, fp16 as release
checkpoints are.
"""
from __future__ import annotations

import argparse
import dataclasses

import yaml

from segmif_core.checkpoint import load_checkpoint, save_checkpoint
from segmif_core.models import build_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("changes", nargs="*", metavar="KEY=VALUE")
    ap.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                    help="network input size to store (default: SRC's)")
    args = ap.parse_args(argv)
    if not args.changes and not args.input_size:
        ap.error("nothing to change: give KEY=VALUE pairs and/or --input-size H W")
    if args.input_size and min(args.input_size) < 32:
        ap.error(f"--input-size must be at least 32 x 32 (the encoders' stride), got "
                 f"{args.input_size}")
    changes = {}
    for item in args.changes:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"expected KEY=VALUE, got {item!r}")
        changes[key] = yaml.safe_load(value)
    model, classes, info = load_checkpoint(args.source)
    config = dict(dataclasses.asdict(model.config), **changes)
    new = build_model(model.name, config, load_pretrained=False)
    try:
        new.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{changes} changes the model's parameters; the weights of "
                           f"{args.source} do not fit it: {str(err).splitlines()[1].strip()}"
                           ) from None
    meta = dict(info.get("meta") or {}, config_changed=changes, source=str(args.source))
    input_size = info["input_size"]
    if args.input_size:
        meta["input_size_changed"] = [list(input_size), list(args.input_size)]
        input_size = args.input_size
    save_checkpoint(args.out, new, classes, input_size=input_size, meta=meta)
    print(f"{args.out}: {model.name} with {changes}, input size {list(input_size)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
