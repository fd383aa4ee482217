"""A Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, each a process started from the built binaries.

kwok plays the kubelets: it manages the fake nodes created here (annotation
`kwok.x-k8s.io/node: fake`), keeps their leases, and moves every pod scheduled on them to Running
and Ready without starting a container. Everything else is the real thing: admission (Pod
Security included), RBAC, CRD validation, the Deployment, ReplicaSet, HPA, namespace, garbage
collector and PersistentVolume controllers, the scheduler. Every port is chosen free at start
and bound to 127.0.0.1; `run_dir` holds certificates, kubeconfigs, logs and `state.json`, from
which `stop_recorded` stops exactly the processes that were started.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controlplane import modules
from controlplane.loopback import free_port, wait_until
from controlplane.pki import PKI

SERVICE_CIDR = "10.0.0.0/24"
FAKE_NODE_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
STATE = "state.json"
ADMIN = "admin"
ADAPTER_NAMESPACE, ADAPTER_SERVICE = "monitoring", "prometheus-adapter"
POD_CIDR = "10.244.0.1/16"


@dataclass(frozen=True)
class FakeNode:
    name: str
    zone: str
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 0


# Three CPU nodes in three zones (the prod overlay spreads over zones and hostnames) and two GPU
# nodes labelled and tainted the way NVIDIA's GPU operator does (the gpu overlay selects them).
DEFAULT_NODES = (FakeNode("kwok-node-a", "zone-a"), FakeNode("kwok-node-b", "zone-b"), FakeNode("kwok-node-c", "zone-c"),
                 FakeNode("kwok-gpu-node-a", "zone-a", gpus=4), FakeNode("kwok-gpu-node-b", "zone-b", gpus=4))
# Statically provisioned ReadWriteMany volumes, as an NFS or Filestore admin would create them,
# so claims without a storage class bind (the PersistentVolume controller does the binding).
DEFAULT_VOLUMES = 4
VOLUME_SIZE = "20Gi"


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the process that started it dies (Linux prctl)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class ControlPlane:
    run_dir: Path
    bin_dir: Path
    hpa_sync_period_s: int = 15
    # True: the processes die with the Python process that started them (tests). False: they
    # outlive it and `python -m controlplane down` stops them (`make controlplane-up`).
    tie_to_parent: bool = True
    say: Callable[[str], None] = print
    # Where the API server listens and what it advertises (the `kubernetes` Service's endpoint):
    # loopback for kwok's fake nodes; an address pods can reach for a real node (node.py).
    address: str = "127.0.0.1"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    # --- paths --------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / f"{ADMIN}.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports['apiserver']}"

    def env(self) -> dict[str, str]:
        """Environment for kubectl and `make deploy`: these binaries first on PATH, this cluster."""
        return {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "KUBECONFIG": str(self.kubeconfig)}

    def logs(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    # --- start --------------------------------------------------------------------------------
    def start(self, nodes: tuple[FakeNode, ...] = DEFAULT_NODES, volumes: int = DEFAULT_VOLUMES) -> None:
        """Start everything; on any failure stop what was started and raise with the log tail."""
        started = time.monotonic()
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self._certificates()
            self._etcd()
            self._apiserver()
            self._controller_manager()
            self._scheduler()
            self._kwok()
            self._record_state()
            self.add_nodes(nodes)
            self.add_volumes(volumes)
            self.add_crds()
            # The service-account controller has run once the default namespace's account exists.
            wait_until(lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                            check=False).returncode == 0, 60, "the default service account")
        except BaseException:
            self.stop()
            raise
        self.say(f"[controlplane] up in {time.monotonic() - started:.1f} s: {self.server}  "
                 f"KUBECONFIG={self.kubeconfig}")

    def _certificates(self) -> None:
        pki = PKI(self.run_dir / "pki")
        self.ca = pki.ca("ca")
        self.front_proxy_ca = pki.ca("front-proxy-ca")
        self.apiserver_cert = pki.issue("apiserver", self.ca, "kube-apiserver", server_names=(
            *{self.address, "127.0.0.1"}, "localhost", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"))
        self.front_proxy_client = pki.issue("front-proxy-client", self.front_proxy_ca, "front-proxy-client")
        # The API server's identity towards kubelets (logs, exec, port-forward), as kubeadm issues it.
        self.kubelet_client = pki.issue("apiserver-kubelet-client", self.ca, "kube-apiserver-kubelet-client",
                                        groups=("system:masters",))
        self.service_account_key = pki.signing_key("service-account")
        self.clients = {
            ADMIN: pki.issue(ADMIN, self.ca, "flywheel-test-admin", groups=("system:masters",)),
            "controller-manager": pki.issue("controller-manager", self.ca, "system:kube-controller-manager"),
            "scheduler": pki.issue("scheduler", self.ca, "system:kube-scheduler"),
        }
        self.pki = pki

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = self.logs(name).open("ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=self.run_dir, start_new_session=True, env=env,
                                            preexec_fn=_die_with_parent if self.tie_to_parent else None)
        log.close()

    def _wait(self, name: str, check, timeout_s: float = 90) -> None:
        def alive_and_ready():
            if self.procs[name].poll() is not None:
                raise SystemExit(f"{name} exited with {self.procs[name].returncode}:\n{self.log_tail(name)}")
            return check()
        try:
            wait_until(alive_and_ready, timeout_s, f"{name} to become ready")
        except TimeoutError as err:
            raise TimeoutError(f"{err}\n{self.log_tail(name)}") from None

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.logs(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.ports["etcd"] = client
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name=default", f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            # A throw-away store: no fsync (as envtest runs it) keeps writes off the disk's latency.
            "--unsafe-no-fsync", "--log-level=warn"])
        self._wait("etcd", lambda: b'"health":"true"' in urllib.request.urlopen(
            f"http://127.0.0.1:{client}/health", timeout=2).read())

    def _apiserver(self) -> None:
        port = free_port()
        self.ports["apiserver"] = port
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            f"--bind-address={self.address}", f"--advertise-address={self.address}", f"--secure-port={port}",
            f"--cert-dir={self.run_dir / 'apiserver-certs'}",
            f"--tls-cert-file={self.apiserver_cert.cert}", f"--tls-private-key-file={self.apiserver_cert.key}",
            f"--client-ca-file={self.ca.cert}",
            # A real node's name resolves nowhere: reach its kubelet (logs, exec) by its IP.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={self.kubelet_client.cert}",
            f"--kubelet-client-key={self.kubelet_client.key}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={self.service_account_key.cert}",
            f"--service-account-signing-key-file={self.service_account_key.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Node: a kubelet reads only what its own pods need (with the NodeRestriction admission).
            "--authorization-mode=Node,RBAC",
            # Privileged pods are a Pod Security question here, as on kubeadm clusters: admission
            # (not a global switch) is what refuses them in a "restricted" namespace.
            "--allow-privileged=true",
            # The aggregation layer, for prometheus-adapter's custom and resource metrics APIs.
            f"--requestheader-client-ca-file={self.front_proxy_ca.cert}",
            "--requestheader-allowed-names=front-proxy-client", "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={self.front_proxy_client.cert}",
            f"--proxy-client-key-file={self.front_proxy_client.key}",
            "--profiling=false", "--v=1"])
        self._write_kubeconfigs()
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(str(self.clients[ADMIN].cert), str(self.clients[ADMIN].key))
        self._wait("kube-apiserver", lambda: urllib.request.urlopen(
            f"{self.server}/readyz", context=context, timeout=5).read() == b"ok", timeout_s=120)

    def _write_kubeconfigs(self) -> None:
        for user, pair in self.clients.items():
            config = {
                "apiVersion": "v1", "kind": "Config", "current-context": "flywheel-test",
                "clusters": [{"name": "flywheel-test", "cluster": {
                    "server": self.server, "certificate-authority-data": _b64(self.ca.cert)}}],
                "users": [{"name": user, "user": {"client-certificate-data": _b64(pair.cert),
                                                  "client-key-data": _b64(pair.key)}}],
                "contexts": [{"name": "flywheel-test", "context": {"cluster": "flywheel-test", "user": user}}],
            }
            path = self.run_dir / f"{user}.kubeconfig"
            path.write_text(yaml.safe_dump(config))
            path.chmod(0o600)

    def _component(self, name: str, binary: str, extra: list[str]) -> None:
        kubeconfig = self.run_dir / f"{name}.kubeconfig"
        port = free_port()
        self.ports[name] = port
        self._spawn(binary, [
            str(self.bin_dir / binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={port}", f"--cert-dir={self.run_dir / (name + '-certs')}", "--v=1", *extra])
        insecure = ssl._create_unverified_context()  # noqa: S323 - health of a loopback self-signed server
        self._wait(binary, lambda: urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=insecure, timeout=5).read() == b"ok")

    def _controller_manager(self) -> None:
        self._component("controller-manager", "kube-controller-manager", [
            # Each controller acts as its own service account, so the bootstrap RBAC roles apply.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.service_account_key.key}",
            f"--root-ca-file={self.ca.cert}",
            f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period_s}s"])

    def _scheduler(self) -> None:
        self._component("scheduler", "kube-scheduler", [])

    def _kwok(self) -> None:
        config = self.run_dir / "kwok.yaml"
        config.write_text("\n---\n".join(path.read_text() for path in modules.kwok_stages()))
        port = free_port()
        self.ports["kwok"] = port
        selector = ",".join(f"{k}={v}" for k, v in FAKE_NODE_ANNOTATION.items())
        self._spawn("kwok", [
            str(self.bin_dir / "kwok"), f"--config={config}", f"--kubeconfig={self.kubeconfig}",
            f"--manage-nodes-with-annotation-selector={selector}", f"--server-address=127.0.0.1:{port}",
            f"--cidr={POD_CIDR}", "--node-lease-duration-seconds=40"])
        self._wait("kwok", lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read())

    # --- cluster contents ---------------------------------------------------------------------
    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                                input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
        return result

    def apply(self, objects: list[dict]) -> None:
        self.kubectl("apply", "--server-side", "--field-manager=flywheel-controlplane", "-f", "-",
                     stdin=yaml.safe_dump_all(objects))

    def add_nodes(self, nodes: tuple[FakeNode, ...]) -> None:
        if not nodes:
            return
        self.apply([fake_node(n) for n in nodes])
        names = [n.name for n in nodes]

        def all_ready():
            items = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            ready = {i["metadata"]["name"] for i in items
                     if any(c["type"] == "Ready" and c["status"] == "True" for c in i["status"].get("conditions", []))}
            return set(names) <= ready
        wait_until(all_ready, 60, f"nodes {names} Ready (kwok)")

    def add_crds(self) -> None:
        """The CRDs a kube-prometheus-stack and Kubeflow Pipelines cluster has that the manifests
        use, read from their Go modules."""
        self.install_crds([*modules.prometheus_operator_crds(), modules.argo_workflowtaskresult_crd()])

    def install_crds(self, crds: list[Path]) -> None:
        """Apply CRD files (server-side: Argo's full CRDs are too large for the last-applied
        annotation) and wait until the API server serves them."""
        self.kubectl("apply", "--server-side", *[arg for crd in crds for arg in ("-f", str(crd))])
        # A CRD the API server has not given a status yet makes `kubectl wait` fail at once
        # ("status.conditions accessor error") instead of waiting: ask again until it has one.
        for attempt in range(20):
            waited = self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s",
                                  timeout=90, check=False)
            if waited.returncode == 0:
                return
            if "accessor error" not in waited.stderr or attempt == 19:
                raise RuntimeError(f"kubectl wait for the CRDs failed:\n{waited.stderr.strip()}")
            time.sleep(0.5)

    def add_volumes(self, count: int) -> None:
        if not count:
            return
        self.apply([{
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"rwx-volume-{i}"},
            "spec": {"capacity": {"storage": VOLUME_SIZE}, "accessModes": ["ReadWriteMany"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                     "nfs": {"server": "nfs.invalid", "path": f"/exports/{i}"}}} for i in range(count)])

    # --- prometheus-adapter --------------------------------------------------------------------
    def start_prometheus_adapter(self, prometheus_url: str, config: dict, relist_s: int = 10) -> None:
        """prometheus-adapter with `config` (its rules file), registered with the aggregation layer
        as the custom metrics API and, when the config has resourceRules, the resource metrics API.

        The APIServices point at an ExternalName Service resolving to localhost, so the API server
        proxies to the adapter on loopback; the adapter's certificate is issued for the Service's
        DNS name and the API server checks it against the CA in the APIService. The adapter reads
        the cluster with the admin identity (a cluster would give it a service account bound to
        system:auth-delegator and a pod/namespace reader, as its Helm chart does)."""
        serving = self.pki.issue("prometheus-adapter", self.ca, "prometheus-adapter", server_names=(
            f"{ADAPTER_SERVICE}.{ADAPTER_NAMESPACE}.svc", "localhost", "127.0.0.1"))
        port = free_port()
        self.ports["prometheus-adapter"] = port
        config_file = self.run_dir / "prometheus-adapter.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self._spawn("prometheus-adapter", [
            str(self.bin_dir / "prometheus-adapter"), f"--secure-port={port}", "--bind-address=127.0.0.1",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--lister-kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}", f"--prometheus-url={prometheus_url}",
            f"--metrics-relist-interval={relist_s}s", f"--config={config_file}", "--v=1"])
        self._record_state()
        insecure = ssl._create_unverified_context()  # noqa: S323 - health of a loopback server
        self._wait("prometheus-adapter", lambda: urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=insecure, timeout=5).read() == b"ok")
        apis = [("custom.metrics.k8s.io", "v1beta1"), ("custom.metrics.k8s.io", "v1beta2")]
        if config.get("resourceRules"):
            apis.append(("metrics.k8s.io", "v1beta1"))
        self.apply([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ADAPTER_NAMESPACE}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE},
             "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"name": "https", "port": port}]}},
            *({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"{version}.{group}"},
               "spec": {"group": group, "version": version, "caBundle": _b64(self.ca.cert),
                        "service": {"namespace": ADAPTER_NAMESPACE, "name": ADAPTER_SERVICE, "port": port},
                        "groupPriorityMinimum": 100, "versionPriority": 200 if version == "v1beta2" else 100}}
              for group, version in apis)])
        for group, version in apis:
            self.kubectl("wait", "--for=condition=Available", f"apiservice/{version}.{group}", "--timeout=60s",
                         timeout=90)

    def start_kfp_api_server(self, api_server: Path, namespace: str, address: str = "127.0.0.1",
                             v2_images: tuple[str, str] | None = None) -> str:
        """KFP's API server (single user) creating runs in `namespace` of this cluster, with MariaDB
        (Debian's) as its database on loopback and moto as its S3 object store, its APIs and the
        store on `address` (a node's pods reach the host's link address); `v2_images` (driver,
        launcher) are the images its Workflows name. Returns its endpoint, what `make submit
        KFP_HOST=` names; `ports` gets its processes' ports as kfp-<name>."""
        data = self.run_dir / "kfp"
        data.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("mariadb", "s3", "http", "grpc")}
        subprocess.run(["mariadb-install-db", "--user=root", f"--datadir={data / 'mariadb'}",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)
        self._spawn("mariadb", ["mariadbd", "--user=root", f"--datadir={data / 'mariadb'}",
                                f"--socket={data / 'mariadb.sock'}", f"--port={ports['mariadb']}",
                                "--bind-address=127.0.0.1", "--skip-grant-tables"])
        self._wait("mariadb", lambda: socket.create_connection(("127.0.0.1", ports["mariadb"]), 1).close() or True)
        self._spawn("moto", [str(Path(sys.executable).parent / "moto_server"), "-H", address, "-p", str(ports["s3"])])
        self._wait("moto", lambda: urllib.request.urlopen(f"http://{address}:{ports['s3']}/", timeout=2).read())
        (data / "config.json").write_text(json.dumps({
            "DBDriverName": "mysql", "InitConnectionTimeout": "60s", "CacheEnabled": "true",
            "DEFAULTPIPELINERUNNERSERVICEACCOUNT": "pipeline-runner", "CRON_SCHEDULE_TIMEZONE": "UTC",
            "DBConfig": {"ConMaxLifeTime": "120s", "MySQLConfig": {
                "Host": "127.0.0.1", "Port": str(ports["mariadb"]), "User": "root", "Password": "",
                "DBName": "mlpipeline", "GroupConcatMaxLen": "4194304"}},
            "ObjectStoreConfig": {"AccessKey": "test", "SecretAccessKey": "test", "BucketName": "mlpipeline",
                                  "PipelinePath": "pipelines"}}))
        env = {**self.env(), "POD_NAMESPACE": namespace,
               "MINIO_SERVICE_SERVICE_HOST": address, "MINIO_SERVICE_SERVICE_PORT": str(ports["s3"]),
               # Required at start; only the UI's visualizations use it.
               "ML_PIPELINE_VISUALIZATIONSERVER_SERVICE_HOST": "127.0.0.1",
               "ML_PIPELINE_VISUALIZATIONSERVER_SERVICE_PORT": str(free_port())}
        if v2_images:
            env["V2_DRIVER_IMAGE"], env["V2_LAUNCHER_IMAGE"] = v2_images
        url = f"http://{address}:{ports['http']}"
        # The gRPC port without a host: the API server's HTTP gateway dials "localhost" + this flag.
        self._spawn("kfp-apiserver", [str(api_server), f"--config={data}", "--logtostderr",
                                      f"--httpPortFlag={address}:{ports['http']}", f"--rpcPortFlag=:{ports['grpc']}"],
                    env=env)
        self._wait("kfp-apiserver", lambda: urllib.request.urlopen(f"{url}/apis/v2beta1/healthz", timeout=2).read(),
                   timeout_s=180)
        self.ports.update({f"kfp-{name}": port for name, port in ports.items()})
        self._record_state()
        return url

    def expose_host_ports(self, namespace: str, name: str, ports: dict[str, tuple[int, int]]) -> str:
        """A Service `name` without a selector whose one endpoint is this host (`address`), so that
        pods reach a process of the host through it (kube-proxy's rules) and kubelet hands them its
        <NAME>_SERVICE_HOST and _PORT_<PORT NAME> variables, as for a Service of pods. `ports`: port
        name -> (the Service's port, the host's). Returns the Service's cluster IP."""
        self.apply([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
             "spec": {"ports": [{"name": port_name, "port": port, "targetPort": host_port, "protocol": "TCP"}
                                for port_name, (port, host_port) in ports.items()]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{name}-host", "namespace": namespace,
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}],
             "ports": [{"name": port_name, "port": host_port, "protocol": "TCP"}
                       for port_name, (_, host_port) in ports.items()]}])
        return self.kubectl("get", "service", name, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout

    def start_argo_controller(self, argo_bin: Path, namespace: str, executor_image: str) -> None:
        """Argo's workflow controller (built by controlplane/argo.py; its log is
        workflow-controller-<namespace>) running the Workflows of `namespace`, with `executor_image`
        (argoexec) as their pods' init and wait containers, and the Role its executor needs (task
        results) bound to the namespace's service accounts."""
        self.install_crds(modules.argo_crds())
        self.kubectl("create", "namespace", namespace, check=False)    # may exist
        metrics = free_port()   # its readiness: the metrics server listens once the controller runs
        self.apply([
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "workflow-controller-configmap", "namespace": namespace},
             "data": {"metricsConfig": yaml.safe_dump({"enabled": True, "port": metrics, "secure": False}),
                      "telemetryConfig": yaml.safe_dump({"enabled": False})}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "argo-executor", "namespace": namespace},
             "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                        "verbs": ["create", "patch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "argo-executor", "namespace": namespace},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argo-executor"},
             "subjects": [{"kind": "Group", "name": f"system:serviceaccounts:{namespace}",
                           "apiGroup": "rbac.authorization.k8s.io"}]}])
        name = f"workflow-controller-{namespace}"   # one controller per namespace
        self._spawn(name, [
            str(argo_bin / "workflow-controller"), f"--kubeconfig={self.kubeconfig}", "--namespaced",
            f"--managed-namespace={namespace}", f"--namespace={namespace}", f"--executor-image={executor_image}",
            "--executor-image-pull-policy=Never", "--loglevel=info"],
            env={**self.env(), "LEADER_ELECTION_DISABLE": "true"})
        self._wait(name, lambda: socket.create_connection(("127.0.0.1", metrics), 1).close() or True, timeout_s=120)
        self._record_state()

    def start_mlmd_service(self, python: Path, address: str = "127.0.0.1") -> str:
        """ML Metadata's gRPC service (controlplane/mlmd_service.py, run by `python` of the
        environment that has the `ml-metadata` wheel) on a SQLite file of this cluster's, on
        `address`; returns `host:port`, what KFP's driver and launcher are given as
        METADATA_GRPC_SERVICE_HOST and _PORT."""
        data = self.run_dir / "mlmd"
        data.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._spawn("mlmd", [str(python), str(Path(__file__).resolve().parent / "mlmd_service.py"),
                             f"--database={data / 'metadata.sqlite'}", f"--host={address}", f"--port={port}"])
        self._wait("mlmd", lambda: socket.create_connection((address, port), 1).close() or True)
        self._record_state()
        return f"{address}:{port}"

    # --- stop ---------------------------------------------------------------------------------
    def _record_state(self) -> None:
        state = {"pids": {name: proc.pid for name, proc in self.procs.items()}, "bin_dir": str(self.bin_dir),
                 "server": self.server, "kubeconfig": str(self.kubeconfig)}
        (self.run_dir / STATE).write_text(json.dumps(state, indent=1))

    def stop(self, timeout_s: float = 20) -> None:
        """Stop every process this object started, newest first."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        (self.run_dir / STATE).unlink(missing_ok=True)


def fake_node(node: FakeNode) -> dict:
    labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "topology.kubernetes.io/zone": node.zone, "type": "kwok"}
    capacity = {"cpu": node.cpu, "memory": node.memory, "pods": "110"}
    taints = []
    if node.gpus:
        labels["nvidia.com/gpu.present"] = "true"
        capacity["nvidia.com/gpu"] = str(node.gpus)
        taints = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": labels, "annotations": dict(FAKE_NODE_ANNOTATION)},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": capacity, "allocatable": capacity}}


def stop_recorded(run_dir: Path, timeout_s: float = 20) -> list[str]:
    """Stop the processes a detached `up` recorded in run_dir/state.json; return their names.
    A pid is signalled only while it still runs a binary from the recorded directory."""
    state_file = run_dir / STATE
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    bin_dir = Path(state["bin_dir"]).resolve()
    stopped = []
    for name, pid in reversed(list(state["pids"].items())):
        try:
            exe = Path(os.readlink(f"/proc/{pid}/exe")).resolve()
        except OSError:
            continue  # already gone
        if exe.parent != bin_dir:
            continue  # the pid was reused by something else
        os.kill(pid, signal.SIGTERM)
        stopped.append((name, pid))
    deadline = time.monotonic() + timeout_s
    for name, pid in stopped:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    state_file.unlink()
    return [name for name, _ in stopped]

