"""Typed configuration: one ``Settings`` object, read from ``VISIONGATE_*`` environment variables.

Built once by the CLI or ``create_app()`` and passed down; nothing reads the environment at import.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU quota in CPUs (cgroup v2 ``cpu.max`` or v1 CFS quota), None if unlimited.
    A Kubernetes pod with ``limits.cpu: 2`` on a 64-core node gets 2, not 64."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (a cpuset), capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cpus, math.ceil(limit))) if limit else cpus


def default_keys_file() -> Path:
    """Where `visiongate keys` and the server keep API-key hashes unless VISIONGATE_API_KEYS_FILE says."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "visiongate" / "keys.json"


#: past this many concurrent callers a CPU model only contends for memory bandwidth
MAX_DEFAULT_INFERENCE_WORKERS = 8


#: the built-in model each task prefers when it is loaded and ``default_models`` names none
#: (``export --defaults`` exports these and the detector that gates selfie_segmentation)
TASK_DEFAULTS: dict[str, str] = {
    "classify": "efficientnet_lite0",
    "detect": "yolov3_tiny",
    "segment": "selfie_segmentation",
    "super_resolve": "waifu2x_x2",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONGATE_", extra="ignore")

    # where models come from
    repository: Path = Field(Path("model_repository"), description="Triton model repository to serve")
    backend: Literal["onnxruntime", "triton", "fake"] = Field(
        "onnxruntime", description="'fake' serves FakeBackend's deterministic models (no model files): "
        "for testing clients and deployments, never for answers")
    triton_url: str = "127.0.0.1:8001"
    triton_protocol: Literal["grpc", "http"] = "grpc"
    triton_timeout_s: float = Field(30.0, gt=0, description="per-request timeout towards Triton")
    triton_poll_interval_s: float = Field(2.0, gt=0, description="how often readiness re-checks Triton")

    arena_shrinkage: Literal["dynamic", "always", "never"] = Field(
        "dynamic", description="give onnxruntime's memory arena back after each run: 'dynamic' for models "
        "whose input size varies (super-resolution, where one batch of tiles needs GBs), 'always', 'never'")
    fake_item_delay_s: float = Field(0.0, ge=0, description="backend 'fake': seconds each item costs, to "
                                     "put the queues under load in tests")

    # model lifecycle (Triton's model control modes)
    model_control: Literal["none", "poll", "explicit"] = Field(
        "none", description="'poll' reloads models whose folder changed, every model_poll_interval_s; "
        "'explicit' adds POST /v2/repository/models/{m}/load and /unload (admin)")
    model_poll_interval_s: float = Field(15.0, gt=0, description="poll mode: how often the repository is read")
    readiness: Literal["all", "any"] = Field(
        "all", description="'all': ready only when every model in the repository loaded (Triton's default); "
        "'any': ready when at least one did")
    default_models: dict[str, str] = Field(
        default_factory=dict, description='the model a task uses when a request names none, e.g. '
        '{"classify": "efficientnet_lite0"}; a task left out takes its built-in default when it is loaded '
        '(efficientnet_lite0, yolov3_tiny, selfie_segmentation, waifu2x_x2), else its first model by name')

    # HTTP server
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    http_workers: int = Field(1, ge=1, description="uvicorn worker processes (each loads every model)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cors_origins: list[str] = Field(default_factory=list)

    # limits on what callers may send and ask for
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0, description="413 above this request body size")
    max_image_pixels: int = Field(40_000_000, gt=0, description="413 above this many decoded pixels")
    max_output_pixels: int = Field(16_000_000, gt=0, description="413 when an SR output would exceed it")
    max_top_k: int = Field(1000, gt=0, description="largest top_k a caller may ask for")
    max_images_per_request: int = Field(16, gt=0)

    # embedded runtime
    # The two below follow the machine unless set: each HTTP worker process gets an equal share of
    # the CPUs. Measured on 2 cores: one single-threaded onnxruntime caller per core beats batching
    # and beats one caller with intra_op=2 (README, "Performance").
    inference_workers: int = Field(1, ge=1, description="concurrent onnxruntime callers per model and "
                                   "HTTP worker; default: usable CPUs / http_workers, at most 8")
    intra_op_threads: int = Field(1, ge=1, description="onnxruntime threads inside one call")
    solo_intra_op_threads: int = Field(1, ge=0, description="threads for a batch that runs alone on an "
                                       "idle CPU (lower latency); default: usable CPUs / http_workers; "
                                       "0 or <= intra_op_threads turns it off")
    inference_thread_nice: int = Field(5, ge=0, le=19, description="nice value of the model threads, so the "
                                       "event loop keeps answering (and refusing) under overload; 0 = off")
    decode_on_inference_threads: bool = Field(True, description="embedded runtime: decode each image on "
                                              "the thread that runs its batch (fewer threads than cores' "
                                              "worth of contention); False: a separate decode pool")
    decode_workers: int = Field(default_factory=lambda: max(2, usable_cpus()), ge=1)
    max_queue_per_model: int = Field(256, ge=1, description="admitted requests waiting per model; 503 past it")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline per request; 504 past it; a caller "
                                     "may ask for less with an X-Request-Timeout: <seconds> header")
    max_queue_wait_s: float = Field(2.0, gt=0, description="503 (with Retry-After) at once when the work "
                                    "queued for a model, plus what the request already waited to reach "
                                    "it, would take longer than this at the recent pace")
    max_open_requests: int = Field(512, ge=0, description="inference requests open at once; past it an "
                                   "immediate 503 + Retry-After before the body is read (bounds memory under a "
                                   "flood); 0 = unlimited")
    batch_delay: Literal["auto", "config", "off"] = Field(
        "auto", description="waiting for company before running a batch: 'config' honours each model's "
        "max_queue_delay_microseconds; 'off' batches only what is already queued; 'auto' is 'config' on "
        "a GPU and 'off' on a CPU, where batching saves nothing and the wait is pure latency")
    memory_release_interval_s: float = Field(5.0, ge=0, description="how often to check whether memory freed "
                                             "after a flood can go back to the OS (glibc malloc_trim; done "
                                             "when the gateway is quiet and has grown by 64 MB); 0 = never")
    drain_timeout_s: float = Field(20.0, ge=0, description="grace for in-flight requests on SIGTERM")
    shutdown_delay_s: float = Field(0.0, ge=0, description="on SIGTERM, keep serving (readyz 503) this long "
                                    "before closing the listener; ~5 s behind a Kubernetes Service")

    # super-resolution tiling
    sr_tile_size: int = Field(0, ge=0, description="tile edge in input pixels; 0 = the model's suggestion")
    sr_tile_overlap: int = Field(-1, ge=-1, description="tile overlap; -1 = the model's suggestion")

    # fetching images by URL (off unless an allowlist is given)
    url_fetch_allowlist: list[str] = Field(default_factory=list, description="allowed hostnames")
    url_fetch_timeout_s: float = Field(5.0, gt=0)

    # --- model config ---
    default_max_batch_size: int = Field(4, ge=1, description="max_batch_size given to a model whose "
                                        "config does not say and whose ONNX graph has a dynamic batch axis "
                                        "(Triton's auto-complete default)")

    # --- grpc ---
    grpc_port: int = Field(8081, ge=0, le=65535, description="the Open Inference Protocol over gRPC "
                           "(KServe v2 / Triton's inference.GRPCInferenceService) on host:grpc_port; 0 = off")
    grpc_max_message_bytes: int = Field(64 * 1024 * 1024, gt=0, description="largest gRPC message taken or "
                                        "sent (RESOURCE_EXHAUSTED past it)")

    # --- segmentation ---
    max_mask_pixels: int = Field(16_000_000, gt=0, description="413 when a segmentation answer would hold more "
                                 "mask pixels than this (image width x height, times 1 + the classes when "
                                 "probability maps are asked for)")

    @model_validator(mode="after")
    def _share_cpus_between_workers(self) -> Settings:
        share = max(1, usable_cpus() // self.http_workers)
        if "inference_workers" not in self.model_fields_set:
            self.inference_workers = min(share, MAX_DEFAULT_INFERENCE_WORKERS)
        if "solo_intra_op_threads" not in self.model_fields_set:
            self.solo_intra_op_threads = share
        return self

    # --- hostile input and connections (issue 17) ---
    decode_formats: list[str] = Field(
        default_factory=lambda: ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"],
        description="image formats the gateway decodes (Pillow names); every other Pillow decoder stays "
                    "unreachable (EPS would run Ghostscript)")
    max_json_depth: int = Field(64, ge=2, le=500, description="JSON request bodies nested deeper are a 400")
    header_timeout_s: float = Field(60.0, gt=0, description="a connection whose request headers are not "
                                    "complete this long after its first byte is closed (slowloris)")
    idle_timeout_s: float = Field(5.0, gt=0, description="a connection that sends nothing this long, "
                                  "before its first request or between keep-alive requests, is closed")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line + headers; past it 431 "
                                  "and the connection is closed")
    max_connections: int = Field(1000, ge=1, description="open connections; past it the oldest idle or "
                                 "still-sending-headers one is closed, and if none is, only health probes "
                                 "are answered on the new one (JSON 503 + Retry-After otherwise)")

    @field_validator("decode_formats")
    @classmethod
    def _format_names(cls, formats: list[str]) -> list[str]:
        if not formats:
            raise ValueError("name at least one image format")
        return [f.strip().upper() for f in formats]

    # --- security and observability ---
    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="API keys: 'auto' requires a key whenever keys exist, and refuses to start on a "
        "non-loopback address without any; 'on' always requires one; 'off' serves anyone (explicit opt-out)")
    api_keys_file: Path = Field(default_factory=lambda: default_keys_file(), description="the key store "
                                "(hashes only) shared by `visiongate keys` and the server; re-read when it "
                                "changes")
    api_keys: str = Field("", description="more hashed keys as JSON (the key file's format), for platforms "
                          "that hand secrets over as environment variables; read once at start")
    metrics_open: bool = Field(False, description="serve /metrics without a key (e.g. a scraper on a "
                               "private network); otherwise it needs the 'metrics' scope")
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json (assets from the "
                               "package, never a CDN)")
    tls_certfile: Path | None = Field(None, description="PEM certificate (chain): serve HTTPS")
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile")
    tls_client_ca: Path | None = Field(None, description="PEM CA bundle: require client certificates "
                                       "signed by it (mutual TLS)")
    log_format: Literal["text", "json"] = Field("text", description="'json': one JSON object per line")
    request_log: bool = Field(True, description="one log line per request (id, key name, route, model, "
                              "images, status, timings); never image bytes or keys")
    tracing: Literal["auto", "on", "off"] = Field(
        "auto", description="OpenTelemetry spans: 'auto' is on when an OTLP endpoint is set")
    otlp_endpoint: str = Field("", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                                 "otlp_endpoint"),
                               description="OTLP/HTTP base URL (the standard OTEL_EXPORTER_OTLP_ENDPOINT)")
    otlp_traces_endpoint: str = Field("", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                                                       "otlp_traces_endpoint"),
                                      description="full OTLP/HTTP traces URL; overrides otlp_endpoint")

    @field_validator("tls_certfile", "tls_keyfile", "tls_client_ca", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value: object) -> object:
        return None if value in ("", "null", "None") else value

    # --- triton segmentation ---
    triton_label_probe_max_entries: int = Field(
        1_048_576, ge=1, description="labels of a model with a dynamic output (a segmenter's [C, -1, -1]) whose "
        "label file the gateway cannot see are read from Triton's classification extension only when one "
        "item's output has at most this many entries (all of them are ranked and sent once, at discovery)")
