"""End-to-end single-image CPU latency: decode + resize + normalize + forward.

Loupe's predictor (EfficientNet-Lite0, ONNX Runtime) at its default serving size (128 px) and at
224 px, against the lesson's model, a torchvision resnet34 at 224 px in torch eager, on the same
500x375 JPEG, at 1 and 2 threads. Last line: one JSON object (the 2-thread figures).

    .venv/bin/python bench/predict.py [--runs 300]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from common import open_instance, percentile_ms, print_table, sample_jpeg, write_head_only_version


def time_calls(call, runs: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="Loupe sizes; the first is reported")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()

    import torch
    import torchvision
    from PIL import Image

    from models.imagecheck import decode_checked
    from models.predictor import LoadedModel
    from models.preprocess import prepare

    jpeg = sample_jpeg()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as temp:
        context = open_instance(Path(temp) / "data")
        for size in args.sizes:
            write_head_only_version(context, f"bench{size}", [str(d) for d in range(10)], size)
            folder = context.settings.data_dir / "models" / f"bench{size}"
            for threads in (1, 2):
                model = LoadedModel(folder, threads=threads)

                def loupe_predict(model=model):
                    image = decode_checked(jpeg, max_bytes=10**8, max_pixels=10**8)
                    return model.predict(image)

                durations = time_calls(loupe_predict, args.runs)
                results[("loupe", size, threads)] = durations
                rows.append(
                    [f"Loupe Lite0 ONNX {size}px", threads, percentile_ms(durations, 50), percentile_ms(durations, 99)]
                )

        resnet = torchvision.models.resnet34(weights=None).eval()  # random weights: timing only
        imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        for threads in (1, 2):
            torch.set_num_threads(threads)

            def resnet_predict():
                image = Image.open(io.BytesIO(jpeg))
                batch = torch.from_numpy(prepare(image, 224, *imagenet)[None])
                with torch.no_grad():
                    return torch.softmax(resnet(batch), dim=1).numpy()

            durations = time_calls(resnet_predict, max(50, args.runs // 3))
            results[("resnet34", threads)] = durations
            rows.append(
                ["resnet34 torch eager 224px", threads, percentile_ms(durations, 50), percentile_ms(durations, 99)]
            )
        context.database.dispose()

    print_table("Single-image latency, 500x375 JPEG, CPU (ms)", ["model", "threads", "p50", "p99"], rows)
    size = args.sizes[0]
    p50 = percentile_ms(results[("loupe", size, 2)], 50)
    resnet_p50 = percentile_ms(results[("resnet34", 2)], 50)
    summary = {
        "p50_ms": round(p50, 2),
        "p99_ms": round(percentile_ms(results[("loupe", size, 2)], 99), 2),
        "resnet34_p50_ms": round(resnet_p50, 2),
        "speedup": round(resnet_p50 / p50, 2),
        "size": size,
        "threads": 2,
    }
    for other in args.sizes[1:]:
        summary[f"p50_ms_{other}px"] = round(percentile_ms(results[("loupe", other, 2)], 50), 2)
        summary[f"speedup_{other}px"] = round(resnet_p50 / summary[f"p50_ms_{other}px"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
