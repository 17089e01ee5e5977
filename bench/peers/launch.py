"""Starting the peer servers: each on a free loopback port, from its own venv, stopped by process group.

Every peer takes ``pipeline`` (``reference`` or ``visiongate``, see pipelines.py) and the ONNX file
that pipeline feeds. Venvs (made by bench/run_all.sh from bench/peers/requirements*.txt):
  $VISIONGATE_BENCH_DIR/peers-venv   FastAPI, LitServe; also the Triton python backend's environment
  $VISIONGATE_BENCH_DIR/bento-venv   BentoML
Triton is the real ``tritonserver`` binary shipped in the nvidia-pytriton wheel (main venv).
"""

from __future__ import annotations

import shutil
import site
import sys
from collections.abc import Callable
from pathlib import Path

from bench.common import ROOT, SCRATCH, Server, free_port, start_server

HERE = Path(__file__).resolve().parent
PEERS_VENV = SCRATCH / "peers-venv"
BENTO_VENV = SCRATCH / "bento-venv"


def _py(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _env(model: Path, pipeline: str) -> dict[str, str]:
    return {"MODEL": str(model), "PIPELINE": pipeline, "PYTHONPATH": str(ROOT)}


def fastapi(model: Path, pipeline: str) -> Server:
    port = free_port()
    return start_server(
        "fastapi",
        [
            _py(PEERS_VENV),
            "-m",
            "uvicorn",
            "server_fastapi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
        ],
        f"http://127.0.0.1:{port}",
        "/health",
        env=_env(model, pipeline),
        cwd=HERE,
    )


def litserve(model: Path, pipeline: str) -> Server:
    port = free_port()
    return start_server(
        "litserve",
        [_py(PEERS_VENV), "server_litserve.py"],
        f"http://127.0.0.1:{port}",
        "/health",
        env={**_env(model, pipeline), "PORT": str(port)},
        cwd=HERE,
    )


def bentoml(model: Path, pipeline: str) -> Server:
    port = free_port()
    return start_server(
        "bentoml",
        [
            str(BENTO_VENV / "bin" / "bentoml"),
            "serve",
            "server_bentoml:Classifier",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        f"http://127.0.0.1:{port}",
        "/readyz",
        env={
            **_env(model, pipeline),
            "BENTOML_HOME": str(SCRATCH / "bentoml_home"),
            "BENTOML_DO_NOT_TRACK": "true",
        },
        cwd=HERE,
    )


def _pytriton() -> Path | None:
    for sp in site.getsitepackages():
        p = Path(sp) / "pytriton" / "tritonserver"
        if (p / "bin" / "tritonserver").is_file():
            return p
    return None


def triton_repo(model: Path, pipeline: str, out: Path) -> tuple[Path, Path]:
    """A backend folder and a repository of two python-backend models with dynamic batching (<= 8, 5 ms):
    ``effnet_jpeg`` (JPEG bytes in, decoded by the pipeline inside Triton) and ``effnet_tensor`` (the
    client decodes and sends the graph's input). Both run ``model`` with onnxruntime, in the peers' venv.

    The JPEG travels as a ragged ``UINT8 [-1]`` tensor: this server build's python backend read
    BYTES tensors from tritonclient 2.73 as garbage here (0xAE-filled lengths)."""
    ts = _pytriton()
    assert ts is not None
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ts / "backends", out / "backends")
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy(ts / "python_backend_stubs" / ver / "triton_python_backend_stub", out / "backends" / "python")
    tensor_in = (
        '{ name: "INPUT" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }'
        if pipeline == "reference"
        else '{ name: "INPUT" data_type: TYPE_UINT8 dims: [ 224, 224, 3 ] }'
    )
    inputs = {
        "jpeg": '{ name: "JPEG" data_type: TYPE_UINT8 dims: [ -1 ] allow_ragged_batch: true }',
        "tensor": tensor_in,
    }
    for kind, inp in inputs.items():
        d = out / "repo" / f"effnet_{kind}"
        (d / "1").mkdir(parents=True)
        shutil.copy(HERE / "triton" / f"model_{kind}.py", d / "1" / "model.py")
        params = {
            "EXECUTION_ENV_PATH": PEERS_VENV,
            "ONNX_PATH": model,
            "PIPELINE": pipeline,
            "PEERS_DIR": HERE,
            "ROOT": ROOT,
        }
        (d / "config.pbtxt").write_text(
            f"""name: "effnet_{kind}"
backend: "python"
max_batch_size: 8
input [ {inp} ]
output [ {{ name: "LOGITS" data_type: TYPE_FP32 dims: [ 1000 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 5000 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
            + "".join(
                f'parameters: {{ key: "{k}", value: {{ string_value: "{v}" }} }}\n' for k, v in params.items()
            )
        )
    return out / "backends", out / "repo"


def triton(model: Path, pipeline: str) -> Server:
    ts = _pytriton()
    if ts is None:
        raise RuntimeError("no tritonserver: install nvidia-pytriton into the main venv")
    backends, repo = triton_repo(model, pipeline, SCRATCH / "triton")
    http, grpc, metrics = free_port(), free_port(), free_port()
    server = start_server(
        "triton",
        [
            str(ts / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            f"--http-port={http}",
            f"--grpc-port={grpc}",
            f"--metrics-port={metrics}",
            "--allow-metrics=false",
            "--exit-timeout-secs=5",
        ],
        f"http://127.0.0.1:{http}",
        "/v2/health/ready",
        env={"LD_LIBRARY_PATH": str(ts.parent.parent / "nvidia_pytriton.libs")},
        timeout_s=180,
    )
    server.base_url = f"127.0.0.1:{grpc}"  # the load goes over gRPC
    return server


PEERS: dict[str, Callable[[Path, str], Server]] = {
    "fastapi": fastapi,
    "litserve": litserve,
    "bentoml": bentoml,
    "triton": triton,
}


def available(name: str) -> str | None:
    """Why a peer cannot run here (``None``: it can)."""
    if name in ("fastapi", "litserve", "triton") and not Path(_py(PEERS_VENV)).exists():
        return f"no {PEERS_VENV} (bash bench/run_all.sh makes it)"
    if name == "bentoml" and not (BENTO_VENV / "bin" / "bentoml").exists():
        return f"no {BENTO_VENV} (bash bench/run_all.sh makes it)"
    if name == "triton" and _pytriton() is None:
        return "no tritonserver (pip install nvidia-pytriton into the main venv)"
    return None
