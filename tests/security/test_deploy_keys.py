"""Key handling in the deploy artefacts: the image, compose and Kubernetes all point the gateway at a
key store that is actually mounted there, and the example Secret is a valid Secret holding a valid
store. (tests/deploy validates the rest of the manifests.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from visiongate.service.security.keys import parse_entries
from visiongate.service.settings import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian package kubectl); cannot render Kustomize")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kubernetes" / overlay)],
                         capture_output=True, text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("overlay", ["overlays/cpu-embedded", "overlays/gpu-triton"])
def test_the_gateway_pods_mount_the_key_secret_where_the_settings_look(overlay: str) -> None:
    docs = _rendered(overlay)
    (deployment,) = [d for d in docs
                     if d["kind"] == "Deployment" and d["metadata"]["name"] == "visiongate-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    (ref,) = [e["configMapRef"]["name"] for e in pod["containers"][0]["envFrom"]]
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref]
    keys_file = PurePosixPath(config["data"]["VISIONGATE_API_KEYS_FILE"])
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "visiongate-api-keys"
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    # a whole-directory mount (no subPath): Secret updates reach the file, keys change without restarts
    assert PurePosixPath(mount["mountPath"]) == keys_file.parent and "subPath" not in mount
    assert mount["readOnly"] is True
    assert not [d for d in docs if d["kind"] == "Secret"], "an apply must never overwrite the keys in force"


def test_the_example_secret_is_a_valid_secret_holding_a_valid_key_store() -> None:
    secret = yaml.safe_load((DEPLOY / "kubernetes" / "examples" / "api-keys-secret.yaml").read_text())
    kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                              reason="kubernetes-validate is not installed")
    kubernetes_validate.validate(secret, "1.30.0", strict=True)
    assert secret["metadata"]["name"] == "visiongate-api-keys"
    (entry,) = parse_entries(secret["stringData"]["keys.json"], "example")
    assert entry.sha256 == "0" * 64  # matches no key anyone holds


def test_compose_mounts_a_key_folder_where_the_gateway_looks() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("gateway", "gateway-triton"):
        service = compose["services"][name]
        keys_file = PurePosixPath(service["environment"]["VISIONGATE_API_KEYS_FILE"])
        (mount,) = [v for v in service["volumes"] if PurePosixPath(v["target"]) == keys_file.parent]
        assert mount["read_only"] is True and mount["type"] == "bind"
    assert (DEPLOY / "keys" / ".gitignore").read_text().splitlines()[-2:] == ["*", "!.gitignore"]


def test_the_image_names_a_key_file_and_settings_accept_it() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "VISIONGATE_API_KEYS_FILE=/etc/visiongate/keys/keys.json" in dockerfile
    assert "ARG EXTRAS=triton,otel" in dockerfile
    assert Settings(api_keys_file="/etc/visiongate/keys/keys.json").api_keys_file.name == "keys.json"
