"""Throughput of ``visiongate score`` (in-process engine) against the raw in-process ceiling.

The folder: N JPEGs (640x480, quality 90) cut from scikit-image's photographs. The ceiling: the
same files read, decoded and preprocessed with the gateway's own functions (``service.inference.prepare``,
DCT-domain downscaling included) and run through onnxruntime at batch 1 by 2 threads, each with
a single-threaded session: the best of the layouts bench/inprocess.py tries on this CPU, with no
scheduling, batching, records or files around it. ``visiongate score`` runs as a real subprocess; its rate is
taken over the scoring phase (from its summary) and over the whole command (start-up and model load
included).

    .venv/bin/python bench/bench_score.py [--images 400] [--repository model_repository]

Machines are shared: run it once, when the load average is low, and report the load with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "stereo_motorcycle", "hubble_deep_field")


def make_folder(dest: Path, n: int) -> list[Path]:
    from skimage import data

    photos = []
    for name in PHOTOS:
        img = getattr(data, name)()
        img = img[0] if name == "stereo_motorcycle" else img  # (left, right, disparity)
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        photos.append(Image.fromarray(np.ascontiguousarray(img)).resize((640, 480), Image.Resampling.BICUBIC))
    paths = []
    for i in range(n):
        img = photos[i % len(photos)]
        if (i // len(photos)) % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = dest / f"part{i // 100:02d}" / f"img{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90 - (i // len(photos)) % 7)  # different bytes for every file
        paths.append(path)
    return paths


def ceiling(paths: list[Path], repository: Path, model: str, callers: int = 2) -> float:
    """img/s of read + decode + preprocess + onnxruntime (batch 1), ``callers`` threads, no framework."""
    import onnxruntime as ort

    from visiongate.service.inference import prepare
    from visiongate.service.repository import read_model
    from visiongate.service.settings import Settings

    spec = read_model(repository / model).spec
    settings = Settings(repository=repository)
    onnx_path = repository / model / str(max(spec.versions)) / "model.onnx"
    sessions = []
    for _ in range(callers):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sessions.append(ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"]))
    out_name = sessions[0].get_outputs()[0].name

    def work(k: int) -> None:
        for path in paths[k::callers]:
            prepared = prepare(path.read_bytes(), spec, settings)
            sessions[k].run([out_name], {spec.input.name: prepared.tensor[None]})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(paths) / (time.perf_counter() - started)


def visiongate_score(src: Path, dest: Path, repository: Path, model: str) -> tuple[float, float, dict]:
    """(scoring-phase img/s, whole-command img/s, summary) of one real ``visiongate score`` run."""
    cmd = [sys.executable, "-m", "visiongate.service.cli", "score", str(src), "--task", "classify", "--model", model,
           "--out", str(dest), "--repository", str(repository), "--progress", "none"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"visiongate score failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads((dest / "_summary-00000of00001.json").read_text())
    n = summary["scored"] + summary["failed"]
    return summary["images_per_s"], n / wall, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        repo = work / "repo"  # only the benchmarked model, so the command loads nothing else
        repo.mkdir()
        (repo / args.model).symlink_to((args.repository / args.model).resolve(), target_is_directory=True)
        paths = make_folder(work / "src", args.images)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(paths)} JPEGs 640x480 ({size_mb:.1f} MB), model {args.model}, {os.cpu_count()} CPUs, "
              f"load average before {os.getloadavg()[0]:.2f}")
        ceiling(paths[:16], repo, args.model)  # warm caches and the page cache
        raw = ceiling(paths, repo, args.model)
        steady, whole, summary = visiongate_score(work / "src", work / "out", repo, args.model)
        assert summary["scored"] == len(paths), summary
        rows = [("raw in-process ceiling (read+decode+preprocess+ORT, 2 single-threaded callers)", raw),
                ("visiongate score, scoring phase", steady),
                ("visiongate score, whole command (start-up + model load + listing)", whole)]
        for label, rate in rows:
            print(f"{label:<82} {rate:7.1f} img/s")
        print(f"ratio scoring phase / ceiling: {steady / raw:.2f}   "
              f"whole command / ceiling: {whole / raw:.2f}")
        print(f"load average after {os.getloadavg()[0]:.2f} (the machine is shared: numbers move with it)")


if __name__ == "__main__":
    main()
