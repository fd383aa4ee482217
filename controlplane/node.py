"""A real node for the test control plane: kubelet, containerd and a CNI bridge, so pods run.

Everything of the node lives in a network namespace of its own (`NETNS`), joined to the host by
a veth pair: the host end carries the API server's address (`HOST_IP`), the node end is the
node's IP (`NODE_IP`). containerd (with its own root, state and socket, apart from Docker's),
kubelet and kube-proxy run in that namespace (`nsenter --net`: the mount namespace stays the
host's, so the volumes kubelet mounts are the ones containerd hands to containers). The CNI
bridge plugin puts pods on `cni0` inside it, and kube-proxy's iptables rules live there too.
The host gets two routes through the veth (pods and Services), so the tests reach a pod or a
ClusterIP Service directly. Images are never pulled: the pause image is compiled from
Kubernetes' own `pause.c` (gcc -static) and imported with `ctr`, and so are Docker's images
(`docker save | ctr import`).

Machine-wide state the node changes, and how it is put back: the namespace, veth and routes
are deleted at stop; kubelet sets `SYSCTLS` at start, which are saved and restored; the
`kubepods` cgroups are removed; containerd's mounts under the run directory are unmounted. One
node runs at a time on a machine (`LOCK`).
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controlplane import build
from controlplane.cluster import SERVICE_CIDR, ControlPlane
from controlplane.loopback import wait_until

NETNS = "flywheel-node"
HOST_VETH, NODE_VETH = "fw-node-host", "fw-node"
HOST_IP, NODE_IP, LINK_PREFIX = "10.213.0.1", "10.213.0.2", 30
POD_SUBNET = "10.214.0.0/24"
NODE_NAME = "flywheel-node"
PAUSE_IMAGE = f"localhost/flywheel/pause:{build.kubernetes_version()}"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
LOCK = Path("/run/flywheel-node.lock")
DOCKER_ID_LABEL = "flywheel.docker-image-id"
K8S_NAMESPACE = "k8s.io"   # containerd's namespace for the CRI's images and containers


class NodeUnavailable(RuntimeError):
    """This machine cannot run the node; the message says exactly what is missing."""


def _run(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result


def cni_bin_dir() -> Path | None:
    for d in CNI_BIN_DIRS:
        if all((Path(d) / p).exists() for p in CNI_PLUGINS):
            return Path(d)
    return None


def missing_requirements() -> list[str]:
    """What this machine lacks to run the node (empty: it can run)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (kubelet, containerd and network namespaces need it)")
    for tool in ("containerd", "runc", "ctr", "ip", "iptables", "nsenter", "gcc", "docker"):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` on PATH (`make system-deps` installs the Debian packages)")
    if cni_bin_dir() is None:
        missing.append(f"CNI plugins {', '.join(CNI_PLUGINS)} in {' or '.join(CNI_BIN_DIRS)} "
                       "(Debian package containernetworking-plugins)")
    if missing:
        return missing
    probe = f"fw-probe-{os.getpid()}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return [f"creating a network namespace: {made.stderr.strip()}"]
    try:
        for step in (["ip", "link", "add", "fw-p0", "type", "veth", "peer", "name", "fw-p1", "netns", probe],
                     ["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n"]):
            done = _run(*step, check=False)
            if done.returncode != 0:
                missing.append(f"`{' '.join(step)}`: {done.stderr.strip()}")
    finally:
        _run("ip", "link", "del", "fw-p0", check=False)
        _run("ip", "netns", "del", probe, check=False)
    return missing


def _pod_netns() -> list[str]:
    """The network namespaces containerd's CRI creates for pod sandboxes."""
    return [str(p) for p in Path("/run/netns").glob("cni-*")] if Path("/run/netns").exists() else []


# --- the pause image ----------------------------------------------------------------------------
def pause_archive(out_dir: Path, go_mod_cache: Path) -> Path:
    """An OCI image archive of Kubernetes' pause binary, compiled from the module's pause.c."""
    source = go_mod_cache / f"k8s.io/kubernetes@{build.kubernetes_version()}/build/pause/linux/pause.c"
    if not source.exists():
        raise NodeUnavailable(f"{source} is missing: build the control plane first (`make controlplane-build`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "pause"
    _run("gcc", "-Os", "-static", "-o", str(binary), str(source), f"-DVERSION={build.kubernetes_version()}")
    return binary_image_archive(out_dir / "pause.oci.tar", PAUSE_IMAGE, {"pause": binary}, ["/pause"], "65535:65535")


def binary_image_archive(archive: Path, image: str, files: dict[str, Path], entrypoint: list[str],
                         user: str = "", directories: tuple[str, ...] = (), env: tuple[str, ...] = ()) -> Path:
    """An OCI image archive of one layer: `files` (path in the image -> a static binary on this
    machine, mode 755) and empty world-writable `directories` (such as tmp), for `ctr images import`;
    `env` ("NAME=value") is the containers' environment (PATH, for commands named without a path)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
        for name, path in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = path.stat().st_size, 0o755
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    layer_desc = blob(layer.getvalue(), "application/vnd.oci.image.layer.v1.tar")
    config = blob(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, **({"User": user} if user else {}), **({"Env": list(env)} if env else {})},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}).encode(),
        "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer_desc]}).encode(),
                    "application/vnd.oci.image.manifest.v1+json")
    manifest["annotations"] = {"io.containerd.image.name": image,
                               "org.opencontainers.image.ref.name": image.rsplit(":", 1)[1]}
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        entries = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
                   "index.json": json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode(),
                   **{f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()}}
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


# --- the node -----------------------------------------------------------------------------------
@dataclass
class Node:
    """`open()` first (the network: the API server listens on HOST_IP), then the control plane,
    then `start(plane)`; `stop()` undoes whatever of it was done."""
    run_dir: Path
    plane: ControlPlane | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    netns_before: set[str] = field(default_factory=set)   # pods' namespaces that are not this node's

    @property
    def image_root(self) -> Path:
        """containerd's root (content and snapshots) outlives the run, in the build cache beside the
        binaries, so an image Docker has not changed since the last run is not imported again."""
        return build.cache_dir().parent / "node" / "containerd-root"

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    def _in_netns(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{NETNS}", *args]

    def open(self) -> None:
        """Check the machine, take the node lock, make the network namespace and its link."""
        missing = missing_requirements()
        if missing:
            raise NodeUnavailable("this machine cannot run a kubelet node: " + "; ".join(missing))
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = LOCK.open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NodeUnavailable(f"another kubelet node runs on this machine ({LOCK} is locked)") from None
        self._lock = lock
        started = time.monotonic()
        self.netns_before = set(_pod_netns())
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self._network()
        except BaseException:
            self.stop()
            raise
        self.times["network_s"] = time.monotonic() - started

    def start(self, plane: ControlPlane, images: tuple[str, ...] = ()) -> None:
        """Start containerd, import the pause image and `images` (names Docker has), start kubelet
        (until the Node is Ready) and kube-proxy; any failure stops the node again."""
        self.plane = plane
        started = time.monotonic()
        try:
            self._containerd()
            t = time.monotonic()
            self.import_archive(pause_archive(self.run_dir / "pause", build.cache_dir() / "go-mod"))
            for image in images:
                self.import_docker_image(image)
            self.times["images_s"] = time.monotonic() - t
            self._kubelet()
            self._kube_proxy()
        except BaseException:
            self.stop()
            raise
        self.times["up_s"] = time.monotonic() - started
        self.plane.say(f"[node] {NODE_NAME} Ready in {self.times['up_s']:.1f} s "
                       f"(images imported in {self.times['images_s']:.1f} s)")

    # --- network --------------------------------------------------------------------------------
    def _network(self) -> None:
        _run("ip", "netns", "del", NETNS, check=False)   # left by a run that was killed
        _run("ip", "link", "del", HOST_VETH, check=False)
        _run("ip", "netns", "add", NETNS)
        _run("ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", NETNS)
        _run("ip", "addr", "add", f"{HOST_IP}/{LINK_PREFIX}", "dev", HOST_VETH)
        _run("ip", "link", "set", HOST_VETH, "up")
        node = self._in_netns
        _run(*node("ip", "addr", "add", f"{NODE_IP}/{LINK_PREFIX}", "dev", NODE_VETH))
        _run(*node("ip", "link", "set", NODE_VETH, "up"))
        _run(*node("ip", "link", "set", "lo", "up"))
        _run(*node("ip", "route", "add", "default", "via", HOST_IP))
        # Inside the node: route between the veth and the pods' bridge, and let kube-proxy's
        # iptables rules see bridged traffic (a pod reaching a Service backed by a pod on cni0).
        _run(*node("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        _run(*node("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"), check=False)
        for cidr in (POD_SUBNET, SERVICE_CIDR):
            _run("ip", "route", "replace", cidr, "via", NODE_IP)
        cni = self.run_dir / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-flywheel.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "flywheel", "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.run_dir / "cni-ipam"),
                          "ranges": [[{"subnet": POD_SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "loopback"}]}, indent=1))

    # --- containerd -----------------------------------------------------------------------------
    def _containerd(self) -> None:
        root = self.run_dir / "containerd"
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.toml"
        config.write_text(f"""version = 2
root = "{self.image_root}"
state = "{root / 'state'}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{root / 'containerd.ttrpc.sock'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine lacks CAP_SYS_RESOURCE: an OOM score below containerd's own cannot be set.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{self.run_dir / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
""")
        self._spawn("containerd", self._in_netns("containerd", f"--config={config}"))
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0)

    def ctr(self, *args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return _run("ctr", f"--address={self.socket}", f"--namespace={K8S_NAMESPACE}", *args, check=check,
                    timeout=timeout, **kw)

    def import_archive(self, archive: Path) -> None:
        self.ctr("images", "import", "--no-unpack", str(archive))

    def import_docker_image(self, image: str) -> None:
        """`docker save IMAGE | ctr images import`: the same image, digest and all, for the node;
        skipped when the node has it from an earlier run with the same Docker image ID."""
        inspected = _run("docker", "image", "inspect", "--format", "{{.Id}}", image, check=False)
        if inspected.returncode != 0:
            raise NodeUnavailable(f"Docker has no image {image}: {inspected.stderr.strip()} "
                                  "(`make images` builds Flywheel's images)")
        label = f"{DOCKER_ID_LABEL}={inspected.stdout.strip()}"
        if label in self.ctr("images", "ls", f"name=={image}").stdout:
            return
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        imported = self.ctr("images", "import", "-", stdin=save.stdout, check=False)
        save.stdout.close()
        if save.wait() != 0:
            raise NodeUnavailable(f"docker save {image} failed: {save.stderr.read().decode().strip()} "
                                  "(`make images` builds Flywheel's images)")
        if imported.returncode != 0:
            raise RuntimeError(f"ctr images import of {image} failed: {imported.stderr.strip()}")
        self.ctr("images", "label", image, label)

    # --- kubelet and kube-proxy -----------------------------------------------------------------
    def _client_kubeconfig(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        pair = self.plane.pki.issue(name, self.plane.ca, user, groups=groups)
        path = self.run_dir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "node", "cluster": {"server": self.plane.server,
                                                      "certificate-authority": str(self.plane.ca.cert)}}],
            "users": [{"name": user, "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)}}],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": user}}]}))
        path.chmod(0o600)
        return path

    def _kubelet(self) -> None:
        for name in SYSCTLS:
            self.saved_sysctls[name] = (Path("/proc/sys") / name).read_text().strip()
        kubeconfig = self._client_kubeconfig("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))
        config = self.run_dir / "kubelet.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # cgroups v1 here, and no systemd managing them.
            "failCgroupV1": False, "cgroupDriver": "cgroupfs",
            # Without CAP_SYS_RESOURCE kubelet cannot lower its own OOM score.
            "oomScoreAdj": 0,
            "failSwapOn": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.plane.ca.cert)}},
            "authorization": {"mode": "Webhook"},
            "readOnlyPort": 0, "address": NODE_IP, "healthzBindAddress": "127.0.0.1",
            "resolvConf": "/etc/resolv.conf",
            # The pause image and Flywheel's are imported, never pulled: keep them.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "syncFrequency": "10s", "nodeStatusUpdateFrequency": "5s",
        }))
        self._spawn("kubelet", self._in_netns(
            str(self.plane.bin_dir / "kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.run_dir / 'kubelet'}", f"--cert-dir={self.run_dir / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", "--v=1"))

        def ready():
            node = json.loads(self.plane.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        self._wait("kubelet", ready, timeout_s=180)

    def _kube_proxy(self) -> None:
        kubeconfig = self._client_kubeconfig("kube-proxy", "system:kube-proxy")
        config = self.run_dir / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)}, "mode": "iptables",
            "clusterCIDR": POD_SUBNET, "hostnameOverride": NODE_NAME,
            # Leave the machine-wide conntrack table size alone.
            "conntrack": {"maxPerCore": 0},
            "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256"}))
        self._spawn("kube-proxy", self._in_netns(str(self.plane.bin_dir / "kube-proxy"), f"--config={config}",
                                                 "--v=1"))
        self._wait("kube-proxy", lambda: _run(*self._in_netns("iptables", "-t", "nat", "-S", "KUBE-SERVICES"),
                                               check=False).stdout.count("default/kubernetes") > 0)

    # --- processes ------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        with (self.run_dir / "logs" / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                cwd=self.run_dir, start_new_session=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    def _wait(self, name: str, check, timeout_s: float = 90) -> None:
        def alive():
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n{self.log_tail(name)}")
        wait_until(check, timeout_s, f"{name} to become ready", detail=lambda: "\n" + self.log_tail(name),
                   alive=alive)

    # --- stop -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the pods, the node's processes, and put back what the node changed on the machine.
        Nothing, unless this object holds the node lock (the namespace may be another run's)."""
        if getattr(self, "_lock", None) is None:
            return
        if "containerd" in self.procs and self.procs["containerd"].poll() is None:
            for name in ("kube-proxy", "kubelet"):
                self._terminate(name)
            self._kill_tasks()
        for name in list(self.procs):
            self._terminate(name)
        self._unmount()
        self._remove_cgroups()
        for name, value in self.saved_sysctls.items():
            (Path("/proc/sys") / name).write_text(value)
        self.saved_sysctls.clear()
        if (Path("/run/netns") / NETNS).exists():
            for cidr in (POD_SUBNET, SERVICE_CIDR):
                _run("ip", "route", "del", cidr, "via", NODE_IP, check=False)
            _run("ip", "netns", "del", NETNS, check=False)   # takes the veth pair with it
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def _terminate(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _kill_tasks(self) -> None:
        """Every container's task killed and deleted (its shim exits with it), then the containers."""
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "delete", "--force", task, check=False, timeout=60)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False, timeout=60)

    def _unmount(self) -> None:
        """Unmount what containerd and kubelet mounted under the run directory and the pods'
        network namespaces, deepest first."""
        prefixes = (str(self.run_dir.resolve()), str(self.image_root))
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        pod_netns = set(_pod_netns()) - self.netns_before
        for point in sorted((m for m in mounts if m.startswith(prefixes) or m in pod_netns), key=len, reverse=True):
            _run("umount", "-l", point, check=False)
        for path in pod_netns:
            Path(path).unlink(missing_ok=True)

    def _remove_cgroups(self) -> None:
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / "kubepods"
            if not top.is_dir():
                continue
            for directory in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts),
                                    reverse=True) + [top]:
                try:
                    directory.rmdir()
                except OSError:
                    pass
