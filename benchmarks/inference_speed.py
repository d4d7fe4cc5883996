"""Images/s of top-down inference (model + decoding to image coordinates) on the CPU:
plain eager PyTorch, the fast path (BatchNorm folded, channels_last, inference_mode), the fast
path in bfloat16, onnxruntime in float32 and in int8 (static quantization, calibrated on
synthetic people), as ratios against plain eager, in one run.

    python benchmarks/inference_speed.py [--model hrnet_w32] [--input 256x192] [--batch 1 32] [--repeat 5]

Their accuracy on real people (same model, LSPET val and COCO images): benchmarks/precision_accuracy.py.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from poserenet import create_model
from poserenet.codec import HeatmapCodec
from poserenet.inference import OnnxRunner, PoseHead, TorchRunner, _quantize, _synthetic_people, crop, optimize_for_inference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hrnet_w32")
    p.add_argument("--input", default="256x192")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile on the fast path")
    args = p.parse_args()
    h, w = (int(v) for v in args.input.split("x"))
    torch.manual_seed(0)
    model = create_model(args.model, 17).eval()
    codec = HeatmapCodec((h, w), (h // 4, w // 4), 2.0, dark=True)
    runners = {
        "eager": TorchRunner(PoseHead(model, codec), torch.device("cpu"), channels_last=False),
        "fast path": TorchRunner(PoseHead(optimize_for_inference(model), codec), torch.device("cpu"), channels_last=True),
        "fast path bf16": TorchRunner(PoseHead(optimize_for_inference(model), codec, bf16=True), torch.device("cpu"), channels_last=True),
    }
    if args.compile:
        runners["fast path + compile"] = TorchRunner(PoseHead(optimize_for_inference(model, compile=True), codec), torch.device("cpu"), True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "m.onnx"
        head = PoseHead(model, codec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(head, (torch.zeros(1, 3, h, w), torch.zeros(1, 2), torch.ones(1, 2)), str(onnx_file),
                              input_names=["images", "center", "scale"], output_names=["keypoints", "scores"],
                              dynamic_axes={n: {0: "b"} for n in ("images", "center", "scale", "keypoints", "scores")},
                              opset_version=17, dynamo=False)  # fmt: skip
        runners["onnxruntime"] = OnnxRunner(onnx_file, require_metadata=False)
        int8_file = Path(tmp) / "m8.onnx"
        int8_file.write_bytes(onnx_file.read_bytes())
        _quantize(int8_file, [crop(img, np.array([[0, 0, img.shape[1], img.shape[0]]], np.float32), (h, w), 1.25)
                              for img in _synthetic_people(8)])  # fmt: skip
        runners["onnxruntime int8"] = OnnxRunner(int8_file, require_metadata=False)
        print(f"{args.model} at {h}x{w} (with decoding), {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
        for b in args.batch:
            x = np.random.default_rng(0).standard_normal((b, 3, h, w)).astype(np.float32)
            c = np.full((b, 2), 100, np.float32)
            s = np.full((b, 2), 200, np.float32)
            times: dict[str, list[float]] = {name: [] for name in runners}
            for run in runners.values():
                run(x, c, s)  # warm-up
            # Round-robin, so that a change in the machine's load touches every variant alike.
            for _ in range(args.repeat):
                for name, run in runners.items():
                    t = time.perf_counter()
                    run(x, c, s)
                    times[name].append(time.perf_counter() - t)
            rates = {name: b / statistics.median(ts) for name, ts in times.items()}
            base = rates["eager"]
            print(f"batch {b}: " + ", ".join(f"{n} {r:.1f} img/s ({r / base:.2f}x)" for n, r in rates.items()))


if __name__ == "__main__":
    main()
