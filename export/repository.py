"""Writing models into a Triton model repository, atomically.

A new version is staged in a hidden folder inside the repository (same filesystem, so the final
``rename`` is atomic; hidden and non-numeric, so neither Triton nor the embedded runtime takes it
for a model or a version). Only when the model file, the parity report and everything else are in
place does the staged folder get renamed to the next numeric version. A crash at any point leaves
either the old state or the complete new version, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visiongate.service.model_config import config_to_dict, dump_config
from visiongate.service.repository import label_file, model_versions, read_labels

from .sources.base import ModelCard

STAGING_PREFIX = ".staging-"


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.6g}" for v in values)


def build_config(name: str, card: ModelCard, *, max_batch_size: int, platform: str = "onnxruntime_onnx",
                 num_classes: int | None = None, queue_delay_us: int = 500) -> dict[str, Any]:
    """The config.pbtxt (as a dict) for one model: Triton's fields plus pre/post-processing parameters."""
    in_dims = [-1, -1, 3] if card.input_size is None else [card.input_size[0], card.input_size[1], 3]
    classes = num_classes or (len(card.labels) if card.labels else None)
    if card.task == "classify":
        outputs = [{"name": "logits", "data_type": "TYPE_FP32", "dims": [classes or -1]}]
    elif card.task == "detect":
        outputs = [{"name": "boxes", "data_type": "TYPE_FP32", "dims": [-1, 4]},
                   {"name": "scores", "data_type": "TYPE_FP32", "dims": [-1, classes or -1]}]
    elif card.task == "segment" and card.extra.get("segment_kind") == "instance":
        outputs = [{"name": "boxes", "data_type": "TYPE_FP32", "dims": [-1, 4]},
                   {"name": "scores", "data_type": "TYPE_FP32", "dims": [-1, classes or -1]},
                   {"name": "mask_coefficients", "data_type": "TYPE_FP32", "dims": [-1, -1]},
                   {"name": "prototypes", "data_type": "TYPE_FP32", "dims": [-1, -1, -1]}]
    elif card.task == "segment":
        outputs = [{"name": "scores", "data_type": "TYPE_FP32", "dims": [classes or -1, -1, -1]}]
    else:
        outputs = [{"name": "output", "data_type": "TYPE_FP32", "dims": [-1, -1, 3]}]
    if card.labels:
        label_output = 1 if card.task == "segment" and len(outputs) > 1 else -1
        outputs[label_output]["label_filename"] = "labels.txt"
    params: dict[str, str] = {
        "task": card.task,
        "resize": card.resize,
        "mean": _fmt(card.mean),
        "std": _fmt(card.std),
        "channel_order": card.channel_order,
        "normalization": "in_graph",
    }
    if card.resize_size:
        params["resize_size"] = str(card.resize_size)
    # config.pbtxt states everything the graph's metadata says, so a Triton server (which shows the
    # gateway the config, never the graph) and the embedded runtime build the same spec
    params["interpolation"] = card.interpolation or "bilinear"
    if card.input_size is not None:
        params["input_size"] = f"{card.input_size[0]},{card.input_size[1]}"
    if card.task == "classify":
        params["output_activation"] = "softmax"
    if card.task == "detect":
        params.setdefault("head", "visiongate")
    params.update(card.extra)
    return {
        "name": name,
        "platform": platform,
        "max_batch_size": max_batch_size,
        # Triton's image clients read the layout from ``format`` (FORMAT_NONE makes them refuse the model)
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC", "dims": in_dims}],
        "output": outputs,
        "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us},
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


def canonical(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` in the one dict shape Triton's JSON gives (int64 fields as strings), for comparisons."""
    from visiongate.service.model_config import config_from_dict

    return config_to_dict(config_from_dict(config))


def existing_config(repository: Path, name: str) -> dict[str, Any] | None:
    """The model's current config.pbtxt as a dict (Triton's JSON shape), or ``None`` when the model is new.

    Raises:
        service.model_config.ConfigError: the file exists and is not a valid model config (a re-export
            must not guess what it meant).
    """
    from visiongate.service.model_config import read_config

    path = Path(repository) / name / "config.pbtxt"
    if not path.is_file():
        return None
    return config_to_dict(read_config(path, name))


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(repository: Path) -> list[Path]:
    """Delete staging folders left by exports that died (their pid is gone)."""
    removed: list[Path] = []
    if not repository.is_dir():
        return removed
    for path in repository.glob(f"{STAGING_PREFIX}*"):
        parts = path.name[len(STAGING_PREFIX):].split("-")
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        if pid is None or not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class StagedVersion:
    """A version being built. Put files in ``directory``; ``commit`` makes it visible."""

    def __init__(self, repository: Path, name: str) -> None:
        self.repository = repository
        self.name = name
        self._root = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-{name}-", dir=repository))
        self.directory = self._root / "version"
        self.directory.mkdir()

    def commit(self, config: dict[str, Any], labels: tuple[str, ...] | None) -> int:
        """Publish the staged files as the next version; returns its number.

        Labels that differ from the model's ``labels.txt`` go into the new version's own folder
        (``<version>/labels.txt``), so the versions already published keep answering with theirs.
        """
        model_dir = self.repository / self.name
        config_text = dump_config(config)
        labels_text = "".join(f"{label}\n" for label in labels) if labels else None
        if labels_text is not None and model_dir.is_dir():
            current = model_dir / (label_file(config) or "labels.txt")
            if current.is_file() and read_labels(current) != labels:
                (self.directory / "labels.txt").write_text(labels_text, encoding="utf-8")
                labels_text = None  # the model-level file stays what the older versions were served with
        _fsync_tree(self.directory)
        if not model_dir.exists():
            # A new model appears whole: config, labels and version 1 in one rename.
            fresh = self._root / "model"
            fresh.mkdir()
            (fresh / "config.pbtxt").write_text(config_text, encoding="utf-8")
            if labels_text is not None:
                (fresh / "labels.txt").write_text(labels_text, encoding="utf-8")
            os.rename(self.directory, fresh / "1")
            _fsync_tree(fresh)
            try:
                os.rename(fresh, model_dir)
                return 1
            except OSError:
                if not model_dir.is_dir():
                    raise
                os.rename(fresh / "1", self.directory)  # another export created it first: add a version
        if labels_text is not None:
            write_text_atomic(model_dir / "labels.txt", labels_text)
        write_text_atomic(model_dir / "config.pbtxt", config_text)
        for _ in range(100):
            version = (max(model_versions(model_dir), default=0)) + 1
            try:
                os.rename(self.directory, model_dir / str(version))
                return version
            except OSError:
                if not (model_dir / str(version)).exists():
                    raise
        raise RuntimeError(f"could not find a free version number for {self.name}")

    def discard(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


@contextlib.contextmanager
def staged_version(repository: Path, name: str) -> Iterator[StagedVersion]:
    """Stage a version; on any error (or without ``commit``) nothing becomes visible."""
    repository.mkdir(parents=True, exist_ok=True)
    stage = StagedVersion(repository, name)
    try:
        yield stage
    finally:
        stage.discard()
