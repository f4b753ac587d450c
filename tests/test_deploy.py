"""deploy/: the Kubernetes manifests and systemd units parse, hold together, and run commands,
options and probe paths that exist in this checkout's CLI and app.

What a user relies on: `kubectl apply -k deploy/k8s` gets pods whose command is a real
`annex` command, whose probes hit public routes, that run as non-root on a read-only root
filesystem; the GPU collector pushes to the API's Service; the units pass `systemd-analyze
verify` (when the binary is here) and are hardened.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from apscheduler.triggers.cron import CronTrigger

from api import cli  # noqa: F401  (registers every command on the app)
from api.app import PUBLIC_PATHS, create_app
from api.cli_base import app as cli_app
from evidence.home import Home

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
IMAGE = "annex"  # the name kustomization.yaml maps to the registry
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "CronJob"}
KINDS = WORKLOADS | {"Kustomization", "Service", "PersistentVolumeClaim"}
INSTALLED_ANNEX = "/opt/annex/venv/bin/annex"
SEPARATORS = {"then", "do", "exec", "else", "if", "while", "!"}


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if doc is not None:
                    yield path, doc


def workloads() -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload."""
    found = []
    for _, doc in documents():
        if doc["kind"] in WORKLOADS:
            spec = doc["spec"]
            if doc["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            found.append((doc["metadata"]["name"], spec["template"]["spec"]))
    return found


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def the(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


# -- annex invocations ---------------------------------------------------------------------------


def invocations_in_script(script: str) -> list[list[str]]:
    """Each `annex ...` command in a shell script: words between operators (; && || & |)."""
    lines = script.replace("\\\n", " ").replace("\n", " ; ")
    lexer = shlex.shlex(lines, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = []
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token in SEPARATORS or set(token) <= set(";&|()"):
            if words and Path(words[0]).name == "annex":
                found.append(words)
            words = []
        else:
            words.append(token)
    return found


def invocations_of(container: dict[str, Any]) -> list[list[str]]:
    command = [*container.get("command", []), *container.get("args", [])]
    if command and command[0] == "annex":
        return [command]
    if command[:2] == ["/bin/sh", "-c"]:
        return invocations_in_script(command[2])
    return []


def unresolved(words: list[str]) -> list[str]:
    """What in `annex ARGS...` this checkout's CLI does not know: 'collect gpu --push'."""
    command: Any = typer.main.get_command(cli_app)  # Typer's own click: duck-typed
    path: list[str] = []
    args = words[1:]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        sub = command.commands.get(args[0])
        if sub is None:
            return [" ".join([*path, args[0]])]
        command, path, args = sub, [*path, args[0]], args[1:]
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    options = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    return [" ".join([*path, o]) for o in options if o not in known]


def check_invocation(words: list[str]) -> None:
    missing = unresolved(words)
    assert not missing, f"{shlex.join(words)}: not in this checkout's CLI: {missing}"


# -- Kubernetes ----------------------------------------------------------------------------------


def test_every_manifest_parses_and_the_kustomization_lists_them_all() -> None:
    seen = [(path.name, doc["kind"]) for path, doc in documents()]
    assert {kind for _, kind in seen} == KINDS
    for path, doc in documents():
        assert doc["apiVersion"], path
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"].startswith("annex-"), path
            assert "namespace" not in doc["metadata"], path  # applied with -n
    (kustomization,) = by_kind("Kustomization")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert [i["name"] for i in kustomization["images"]] == [IMAGE]
    assert "namespace" not in kustomization


def test_every_pod_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    for name, pod in workloads():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in containers(pod):
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            if c in pod["containers"]:  # only the collector's one-line chown init runs as root
                assert context.get("runAsUser", 1) != 0, (name, c["name"])
        for c in pod["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for c in containers(pod):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes or name == "annex-postgres", (name, mount)


def test_every_annex_container_runs_the_image_and_a_real_annex_command() -> None:
    commands = 0
    for name, pod in workloads():
        for c in containers(pod):
            if name == "annex-postgres":
                assert c["image"].startswith("postgres:")
                continue
            assert c["image"] == IMAGE, (name, c["name"])
            for words in invocations_of(c):
                check_invocation(words)
                commands += 1
    assert commands >= 5  # serve, sweep, init, keys export-public, collect gpu


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="no /bin/sh")
def test_every_shell_script_parses() -> None:
    scripts = [
        c["command"][2]
        for _, pod in workloads()
        for c in containers(pod)
        if c.get("command", [])[:2] == ["/bin/sh", "-c"]
    ]
    assert len(scripts) >= 3  # seed-trust, own-home, the collector's loop
    for script in scripts:
        done = subprocess.run(["/bin/sh", "-n", "-c", script], capture_output=True, check=False)
        assert done.returncode == 0, (script, done.stderr)


def test_an_unknown_command_or_option_is_caught() -> None:
    assert unresolved(["annex", "serve", "--host", "0.0.0.0", "--bogus"]) == ["serve --bogus"]
    assert unresolved(["annex", "colect", "gpu"]) == ["colect"]
    assert unresolved(["annex", "keys", "export-public"]) == []
    script = 'set -u\nannex init --origin "$N/x" --no-model-signing-key || echo no\n'
    assert invocations_in_script(script) == [
        ["annex", "init", "--origin", "$N/x", "--no-model-signing-key"]
    ]


def test_the_api_serves_on_all_interfaces_with_public_probes_and_secret_keys() -> None:
    api = the("Deployment", "annex-api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    command = container["command"]
    assert command[:2] == ["annex", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": port}
    routes = {getattr(r, "path", None) for r in create_app(Home(Path("/nonexistent"))).routes}
    probes = {k: container[k]["httpGet"] for k in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/api/v1/readyz"
    assert probes["livenessProbe"]["path"] == "/api/v1/healthz"
    for probe in [*probes.values(), container["startupProbe"]["httpGet"]]:
        assert probe["path"] in routes and probe["path"] in PUBLIC_PATHS  # no token
        assert probe["port"] == "http"
    env = {e["name"]: e for e in container["env"]}
    assert env["ANNEX_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "annex-database"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in api["volumes"]}
    keys = mounts[env["ANNEX_HOME"]["value"] + "/keys"]
    assert keys["readOnly"] and "secret" in volumes[keys["name"]]
    passphrase = Path(env["ANNEX_KEY_PASSPHRASE_FILE"]["value"])
    secret_mount = mounts[str(passphrase.parent)]
    assert secret_mount["readOnly"] and "secret" in volumes[secret_mount["name"]]


def test_the_service_and_the_collector_reach_the_api() -> None:
    service = the("Service", "annex-api")
    api = the("Deployment", "annex-api")["spec"]["template"]
    assert service["spec"]["selector"].items() <= api["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    collector = the("DaemonSet", "annex-gpu-collector")["spec"]["template"]["spec"]
    assert collector["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = collector["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ANNEX_API_URL"] == f"http://{service['metadata']['name']}"  # port 80
    pushes = [w for w in invocations_of(container) if w[1:3] == ["collect", "gpu"]]
    assert pushes and all("--push" in w for w in pushes)
    assert "nvidia.com/gpu" not in str(container["resources"])  # takes no GPU from workloads


def test_the_sweep_cronjob_runs_a_named_sweep_on_a_valid_schedule() -> None:
    for job in by_kind("CronJob"):
        CronTrigger.from_crontab(job["spec"]["schedule"])
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        spec = job["spec"]["jobTemplate"]["spec"]
        assert spec["backoffLimit"] == 0  # a retry would log the same evidence twice
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"][:2] == ["annex", "sweep"] and len(container["command"]) == 3


def test_postgres_and_the_api_agree_on_the_database_secret() -> None:
    postgres = the("StatefulSet", "annex-postgres")
    service = the("Service", "annex-postgres")
    assert service["spec"]["clusterIP"] == "None"
    assert postgres["spec"]["serviceName"] == service["metadata"]["name"]
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "annex-database"


def test_every_secret_and_configmap_the_pods_need_is_explained_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    needed = set()
    for _, pod in workloads():
        for volume in pod.get("volumes", []):
            needed.add((volume.get("secret") or {}).get("secretName"))
            needed.add((volume.get("configMap") or {}).get("name"))
        for c in containers(pod):
            for e in c.get("env", []):
                needed.add(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name"))
    needed.discard(None)
    assert needed and all(f"`{name}`" in readme for name in needed), needed


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_with_the_image_set() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    built = list(yaml.safe_load_all(done.stdout))
    (image,) = by_kind("Kustomization")[0]["images"]
    wanted = f"{image['newName']}:{image['newTag']}"
    images = re.findall(r"image: (\S+)", done.stdout)
    assert wanted in images and IMAGE not in images
    assert len(built) == len([d for _, d in documents() if d["kind"] != "Kustomization"])


def test_the_image_holds_every_package_and_runs_as_the_manifests_user() -> None:
    containerfile = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (p.rstrip("*") for p in packages):
        assert f"COPY {package} ./{package}\n" in containerfile, package
    (user,) = re.findall(r"^USER (\d+)$", containerfile, flags=re.M)
    for name, pod in workloads():
        if name != "annex-postgres":
            assert pod["securityContext"]["runAsUser"] == int(user), name


# -- systemd -------------------------------------------------------------------------------------


def units() -> list[Path]:
    return sorted([*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")])


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def test_the_units_are_there_and_hardened() -> None:
    names = {p.name for p in units()}
    assert names == {
        "annex-api.service",
        "annex-sweep@.service",
        "annex-sweep@.timer",
        "annex-collect-gpu.service",
        "annex-collect-gpu.timer",
    }
    for path in SYSTEMD.glob("*.service"):
        service = unit(path)["Service"]
        assert service["NoNewPrivileges"] == "yes", path.name
        assert service["ProtectSystem"] == "strict", path.name
        assert service.get("ReadWritePaths") or service.get("StateDirectory"), path.name
        assert service["CapabilityBoundingSet"] == "", path.name
        assert service["SystemCallFilter"] == "@system-service", path.name
        assert "User" in service or service.get("DynamicUser") == "yes", path.name
    for path in SYSTEMD.glob("*.timer"):
        assert unit(path)["Timer"]["Unit"].replace("%i", "") in names, path.name


def test_the_units_run_real_annex_commands() -> None:
    count = 0
    for path in SYSTEMD.glob("*.service"):
        service = unit(path)["Service"]
        lines = [service["ExecStart"], service.get("ExecStartPre", "")]
        for line in lines:
            script = line
            if line.startswith("/bin/sh -c "):
                script = shlex.split(line)[2]
            for words in invocations_in_script(script.replace("%i", "nightly")):
                assert words[0] == INSTALLED_ANNEX, (path.name, words)
                check_invocation(words)
                count += 1
    assert count == 4  # serve, sweep, init, collect gpu


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """Verified with ExecStart pointing at this environment's annex (it checks the path)."""
    annex = Path(sys.executable).with_name("annex")
    if not annex.exists():
        pytest.skip(f"no annex console script beside {sys.executable}")
    for path in units():
        text = path.read_text(encoding="utf-8").replace(INSTALLED_ANNEX, str(annex))
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    names = [str(tmp_path / p.name) for p in units()]
    done = subprocess.run(
        ["systemd-analyze", "verify", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    complaints = [line for line in done.stderr.splitlines() if "annex" in line]
    assert done.returncode == 0 and not complaints, done.stderr
