"""KFP's own backend, built from Go modules (kfp-compiler/): `kfp-compile`, `kfp-apiserver`, and
the `persistence-agent`, `driver` and `launcher-v2` that run in pods.

`kfp-compile PACKAGE.yaml` does to a compiled pipeline package what KFP's API server does when
a run (or, with `-cron`, a recurring run) is created from it, with the API server's own code
(kfp-compiler/main.go), and prints the Argo Workflow (or KFP's ScheduledWorkflow).
`kfp-apiserver` is KFP's API server itself (`ControlPlane.start_kfp_api_server` runs it).
The other three are static binaries, each the one file of an image (`image_archives`) the real
node imports, in place of the ghcr.io/kubeflow images a Kubeflow install pulls: the persistence
agent reports the Workflows' progress to the API server, which names the driver and launcher
images in the Workflows it creates (V2_DRIVER_IMAGE, V2_LAUNCHER_IMAGE).

KFP's module (github.com/kubeflow/pipelines at 2.14.3) requires its `api` and
`kubernetes_platform` modules from folders its module zip leaves out, and the versions of those
modules the Go proxy serves predate the 2.14.3 protos. So the build regenerates their Go code from
the proto descriptors the PyPI packages kfp-pipeline-spec and kfp-kubernetes 2.14.3 embed
(kfp-compiler/protos.txt pins them by hash), with Debian's `protoc` and the `protoc-gen-go`
go.mod pins, into kfp-compiler/gen/ (ignored by git), where go.mod's `replace` lines point.
The binary sits in `<cache>/kfp/bin/<key>/`, keyed on what decides it, as the control plane's do.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from controlplane import modules
from controlplane.build import (ROOT, STAMP, _list_packages, _print, _run_go, build_keyed, cache_dir, go_binary,
                                go_env)

MODULE = Path(__file__).resolve().parent / "kfp-compiler"
GENERATED = MODULE / "gen"
PROTOS = MODULE / "protos.txt"
BINARY = "kfp-compile"
API_SERVER = "kfp-apiserver"
API_SERVER_PACKAGE = "github.com/kubeflow/pipelines/backend/src/apiserver"
PROTOC_GEN_GO = "google.golang.org/protobuf/cmd/protoc-gen-go"
RELEASE = "2.14.3"
NAMESPACE = "kubeflow"   # where a Kubeflow install runs KFP, and single-user KFP its runs
# Binary -> (package, the image it is the one file of). The Workflows name the driver's and the
# launcher's commands without a path, so the images' PATH holds them; the driver writes under /tmp.
POD_COMMANDS = {
    "persistence-agent": ("github.com/kubeflow/pipelines/backend/src/agent/persistence",
                          f"flywheel.local/kfp-persistenceagent:{RELEASE}"),
    "driver": ("github.com/kubeflow/pipelines/backend/src/v2/cmd/driver", f"flywheel.local/kfp-driver:{RELEASE}"),
    "launcher-v2": ("github.com/kubeflow/pipelines/backend/src/v2/cmd/launcher-v2",
                    f"flywheel.local/kfp-launcher:{RELEASE}"),
}
PERSISTENCE_AGENT_IMAGE, DRIVER_IMAGE, LAUNCHER_IMAGE = (image for _, image in POD_COMMANDS.values())
# The environment ML Metadata's service runs in (controlplane/mlmd_service.py): `make mlmd` builds it
# from controlplane/mlmd/requirements.lock; its protobuf and gRPC pins are MLMD's, not Flywheel's.
MLMD_PYTHON = ROOT / ".venv-mlmd" / "bin" / "python"

# The wheel file that embeds each descriptor -> the Go module its go_package lies in.
DESCRIPTORS = {
    "kfp/pipeline_spec/pipeline_spec_pb2.py": "github.com/kubeflow/pipelines/api",
    "kfp/kubernetes/kubernetes_executor_config_pb2.py": "github.com/kubeflow/pipelines/kubernetes_platform",
}
# cache_key.proto is in neither package: it comes as source from the `api` module at the version
# KFP's go.mod requires (the proxy serves that one), compiled against 2.14.3's pipeline_spec.proto.
CACHE_KEY_PROTO = ("github.com/kubeflow/pipelines/api@v0.0.0-20250102152816-873e9dedd766", "v2alpha1/cache_key.proto",
                   "github.com/kubeflow/pipelines/api")
# Imports of those protos that are not among them, from Python packages installed here
# (protobuf, googleapis-common-protos): only their descriptors are read, never their Go code.
DEPENDENCY_MODULES = {
    "google/protobuf/any.proto": "google.protobuf.any_pb2",
    "google/protobuf/duration.proto": "google.protobuf.duration_pb2",
    "google/protobuf/struct.proto": "google.protobuf.struct_pb2",
    "google/rpc/status.proto": "google.rpc.status_pb2",
}


def kfp_cache() -> Path:
    return cache_dir() / "kfp"


def protoc_binary() -> str:
    found = shutil.which("protoc")
    if found is None:
        raise SystemExit("`protoc` is not on PATH (Debian: apt-get install protobuf-compiler)")
    return found


def build_key(go: str) -> str:
    digest = hashlib.sha256()
    for path in (MODULE / "go.mod", MODULE / "go.sum", MODULE / "main.go", PROTOS):
        digest.update(path.read_bytes())
    for command in ([go, "env", "GOVERSION"], [protoc_binary(), "--version"]):
        digest.update(subprocess.run(command, capture_output=True, text=True, check=True).stdout.encode())
    return digest.hexdigest()[:16]


def binary_path(name: str = BINARY) -> Path:
    return kfp_cache() / "bin" / build_key(go_binary()) / name


def built() -> dict | None:
    stamp = binary_path().parent / STAMP
    return json.loads(stamp.read_text()) if stamp.exists() else None


def serialized_descriptor(pb2_source: str, where: str) -> bytes:
    """The FileDescriptorProto a generated `_pb2.py` hands to AddSerializedFile, read without
    importing the module (2.14.3's code asks for a newer protobuf runtime than is installed)."""
    for node in ast.walk(ast.parse(pb2_source)):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AddSerializedFile"
                and node.args and isinstance(node.args[0], ast.Constant)):
            return node.args[0].value
    raise SystemExit(f"{where}: no AddSerializedFile(...) call holding a serialized descriptor")


def descriptor_set(wheels: Path) -> tuple[bytes, dict[str, str]]:
    """A FileDescriptorSet of the two KFP protos and their imports, and each KFP proto's file
    name -> its Go module."""
    from zipfile import ZipFile

    from google.protobuf import descriptor_pb2

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    modules: dict[str, str] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        with ZipFile(wheel) as archive:
            for member, go_module in DESCRIPTORS.items():
                if member in archive.namelist():
                    proto = descriptor_pb2.FileDescriptorProto.FromString(
                        serialized_descriptor(archive.read(member).decode(), f"{wheel.name}:{member}"))
                    files[proto.name] = proto
                    modules[proto.name] = go_module
    if len(modules) != len(DESCRIPTORS):
        raise SystemExit(f"{wheels}: found {sorted(modules)}, expected the protos of {sorted(DESCRIPTORS)}")
    pending = [dep for proto in files.values() for dep in proto.dependency]
    while pending:
        name = pending.pop()
        if name in files:
            continue
        if name not in DEPENDENCY_MODULES:
            raise SystemExit(f"a KFP proto imports {name}, which controlplane/kfp.py does not know where to read")
        proto = descriptor_pb2.FileDescriptorProto.FromString(
            importlib.import_module(DEPENDENCY_MODULES[name]).DESCRIPTOR.serialized_pb)
        files[name] = proto
        pending.extend(proto.dependency)
    # protoc wants every file after the files it imports.
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for dep in files[name].dependency:
                visit(dep)
            ordered.append(name)
    for name in sorted(files):
        visit(name)
    return descriptor_pb2.FileDescriptorSet(file=[files[n] for n in ordered]).SerializeToString(), modules


def write_module_files() -> None:
    """go.mod of each generated module: enough for Go to load the module graph (go.mod's
    requirements decide the versions), so `go build` of protoc-gen-go works before generating."""
    for go_module in DESCRIPTORS.values():
        folder = GENERATED / go_module.rsplit("/", 1)[1]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "go.mod").write_text(f"// Generated by controlplane/kfp.py; not committed.\nmodule {go_module}\n\ngo 1.24\n")


def generate(wheels: Path, protoc_gen_go: Path, work: Path, log) -> None:
    descriptors, go_modules = descriptor_set(wheels)
    (work / "kfp-protos.pb").write_bytes(descriptors)
    # Alone in its folder, so that the old pipeline_spec.proto beside it in the module is not read.
    source_module, source_path, cache_key_module = CACHE_KEY_PROTO
    sources = work / "proto-sources"
    sources.mkdir()
    shutil.copy(modules.download(source_module) / source_path, sources)
    jobs = [(name, go_module, []) for name, go_module in go_modules.items()]
    jobs.append((Path(source_path).name, cache_key_module, [f"--proto_path={sources}"]))
    for proto_name, go_module, extra in jobs:
        folder = GENERATED / go_module.rsplit("/", 1)[1]
        command = [protoc_binary(), f"--descriptor_set_in={work / 'kfp-protos.pb'}", *extra,
                   f"--plugin=protoc-gen-go={protoc_gen_go}", f"--go_out={folder}",
                   f"--go_opt=module={go_module}", proto_name]
        log.write(f"$ {' '.join(command)}\n")
        result = subprocess.run(command, capture_output=True, text=True)
        log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise SystemExit(f"protoc failed for {proto_name}:\n{result.stderr}")


def download_wheels(dest: Path, log) -> None:
    """The two wheels, checked against the hashes in protos.txt (pip refuses any other file)."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
               "--only-binary=:all:", "-r", str(PROTOS), "-d", str(dest)]
    log.write(f"$ {' '.join(command)}\n")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"downloading the KFP proto packages ({PROTOS}) failed:\n{result.stderr.strip()}")


def build(say=_print) -> Path:
    """Return the path of `kfp-compile`, building it, `kfp-apiserver` and the POD_COMMANDS (beside
    it) first when missing."""
    target = binary_path()
    env = go_env(cache_dir())  # the control plane's module and build caches

    def steps(staging: Path, log) -> None:
        say(f"[kfp] building KFP's compiler into {target.parent} (log: {kfp_cache() / 'build.log'})")
        work = staging / "work"  # wheels, descriptors, protoc-gen-go: removed once built
        work.mkdir()
        shutil.rmtree(GENERATED, ignore_errors=True)
        write_module_files()
        download_wheels(work / "wheels", log)
        _run_go(["build", "-o", str(work / "protoc-gen-go"), PROTOC_GEN_GO], MODULE, env, log, say,
                "[kfp] compiling protoc-gen-go")
        generate(work / "wheels", work / "protoc-gen-go", work, log)
        packages = _list_packages(MODULE, env, ["."], log)
        _run_go(["build", "-v", "-ldflags", "-s -w", "-o", str(staging / BINARY), "."], MODULE, env, log, say,
                "[kfp] compiling KFP's API server template and Argo compiler", packages)
        # The API server links SQLite through cgo (storage/db.go names its error codes).
        _run_go(["build", "-ldflags", "-s -w", "-o", str(staging / API_SERVER), API_SERVER_PACKAGE], MODULE,
                {**env, "CGO_ENABLED": "1"}, log, say, "[kfp] compiling KFP's API server (cgo)")
        for name, (package, _) in POD_COMMANDS.items():   # static: each image holds nothing else
            _run_go(["build", "-ldflags", "-s -w", "-o", str(staging / name), package], MODULE,
                    {**env, "CGO_ENABLED": "0"}, log, say, f"[kfp] compiling KFP's {name}")
        shutil.rmtree(work)

    kfp_cache().mkdir(parents=True, exist_ok=True)
    build_keyed(target.parent, kfp_cache(), "kfp", steps, say)
    return target


def image_archives(out_dir: Path) -> list[Path]:
    """OCI archives of the POD_COMMANDS' images (built first when missing), for the node."""
    from controlplane.node import binary_image_archive

    bin_dir = build().parent
    return [binary_image_archive(out_dir / f"{name}.oci.tar", image, {f"bin/{name}": bin_dir / name}, [f"/bin/{name}"],
                                 directories=("tmp",), env=("PATH=/bin",))
            for name, (_, image) in POD_COMMANDS.items()]


def compile_package(package: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `kfp-compile [args] package` (built first when missing); the caller checks the exit."""
    return subprocess.run([str(build()), *args, str(package)], capture_output=True, text=True, timeout=120)


def connect_runs(plane, namespace: str, mlmd: str) -> None:
    """What a Kubeflow Pipelines install gives the namespace its runs execute in, pointing at the
    processes on the host (`start_kfp_api_server`'s, and ML Metadata's service at `mlmd`,
    host:port): the Services ml-pipeline, metadata-grpc-service and minio-service (the driver and
    launcher find them by the variables kubelet sets, as in an install; no cluster DNS here),
    metadata-grpc-configmap, the artifact store's Secret, and the persistence agent, which reports
    the Workflows' progress to the API server, as a Deployment on the node."""
    ports = plane.ports
    api = plane.expose_host_ports(namespace, "ml-pipeline", {"http": (8888, ports["kfp-http"]),
                                                              "grpc": (8887, ports["kfp-grpc"])})
    metadata = plane.expose_host_ports(namespace, "metadata-grpc-service",
                                       {"grpc-api": (8080, int(mlmd.rsplit(":", 1)[1]))})
    plane.expose_host_ports(namespace, "minio-service", {"http": (9000, ports["kfp-s3"])})
    agent = "ml-pipeline-persistenceagent"
    token_dir = "/var/run/secrets/kubeflow/tokens"   # where the agent reads its token (its code fixes it)
    plane.apply([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "metadata-grpc-configmap", "namespace": namespace},
         "data": {"METADATA_GRPC_SERVICE_HOST": metadata, "METADATA_GRPC_SERVICE_PORT": "8080"}},
        # moto takes any key; the launcher still reads one from here, as from MinIO's.
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlpipeline-minio-artifact", "namespace": namespace},
         "stringData": {"accesskey": "test", "secretkey": "test"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": agent, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": agent, "namespace": namespace},
         "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflows"],
                    "verbs": ["get", "list", "watch", "update", "patch"]},
                   {"apiGroups": ["kubeflow.org"], "resources": ["scheduledworkflows"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": agent, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": agent},
         "subjects": [{"kind": "ServiceAccount", "name": agent, "namespace": namespace}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": agent, "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": agent}}, "template": {
             "metadata": {"labels": {"app": agent}},
             "spec": {"serviceAccountName": agent, "containers": [{
                 "name": "agent", "image": PERSISTENCE_AGENT_IMAGE, "imagePullPolicy": "Never",
                 "args": [f"--namespace={namespace}", f"--mlPipelineAPIServerName={api}",
                          "--mlPipelineServiceHttpPort=8888", "--mlPipelineServiceGRPCPort=8887",
                          "--ttlSecondsAfterWorkflowFinish=86400", "--numWorker=2", "--logLevel=info"],
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                 "volumeMounts": [{"name": "token", "mountPath": token_dir, "readOnly": True}]}],
                 "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                     "path": "persistenceagent-sa-token", "expirationSeconds": 3600,
                     "audience": "pipelines.kubeflow.org"}}]}}]}}}}])
    plane.kubectl("rollout", "status", f"deployment/{agent}", "-n", namespace, "--timeout=120s", timeout=150)
