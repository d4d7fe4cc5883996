"""`poserenet data synth|convert|download`."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def cmd_data_synth(args: argparse.Namespace) -> int:
    from ..synth import generate

    paths = generate(args.out, args.num_train, args.num_val, args.seed, progress=not args.quiet)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from ..convert import lsp_to_coco, mpii_to_coco
    from ..files import write_json_atomic

    if args.format == "mpii":
        doc = mpii_to_coco(args.input, args.images, args.gt_mat)
    else:
        if not args.images:
            raise ConfigError("data convert lsp needs --images (boxes are clipped to the image size)")
        doc = lsp_to_coco(args.input, args.images, args.name_format)
    write_json_atomic(args.out, doc)
    heads = sum("head_box" in a for a in doc["annotations"])
    print(f"{args.out}: {len(doc['annotations'])} people in {len(doc['images'])} images"
          + (f", {heads} with head boxes" if heads else ""))  # fmt: skip
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from ..download import fetch

    root = fetch(args.dataset, args.root, args.parts, args.mirror, progress=not args.quiet, keep_archives=args.keep_archives)
    if args.dataset == "coco":
        print(f"done: {root}. For the detector boxes of published COCO results, put "
              "COCO_val2017_detections_AP_H_56_person.json (from the HRNet release) in "
              f"{root / 'person_detection_results'}/")  # fmt: skip
    else:
        print(f"done: {root}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="write the synthetic person-keypoint dataset (COCO format)")
    s.add_argument("--out", required=True)
    s.add_argument("--num-train", type=int, default=3000)
    s.add_argument("--num-val", type=int, default=300)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_data_synth)
    cv = dsub.add_parser("convert", help="MPII json/.mat or LSP joints.mat -> COCO-style keypoints")
    cv.add_argument("format", choices=["mpii", "lsp"])
    cv.add_argument("input", help="mpii: the json list (train.json, valid.json); lsp: joints.mat (LSP or LSPET)")
    cv.add_argument("--out", required=True, help="the COCO-style file to write")
    cv.add_argument("--images", help="image folder (mpii: optional, adds image sizes; lsp: required)")
    cv.add_argument("--gt-mat", help="mpii: the evaluation ground truth (gt_valid.mat) whose head boxes PCKh needs")
    cv.add_argument("--name-format", help="lsp: image file names (default im0001.jpg for LSP, im00001.jpg for LSPET)")
    cv.set_defaults(func=cmd_data_convert)
    dl = dsub.add_parser("download", help="official COCO/MPII archives: progress, resume, checksums, unpacked for the configs")
    dl.add_argument("dataset", choices=["coco", "mpii"])
    dl.add_argument("--root", required=True, help="where to put the dataset (e.g. data/coco)")
    dl.add_argument("--parts", nargs="+", help="coco: annotations val train; mpii: annotations images (default: all)")
    dl.add_argument("--mirror", help="fetch every archive from MIRROR/<file name> instead of its official address")
    dl.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after unpacking")
    dl.add_argument("--quiet", action="store_true")
    dl.set_defaults(func=cmd_data_download)
