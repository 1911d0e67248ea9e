#!/usr/bin/env python3
"""Builds the project's OCI images without a container engine (see docs/images.md).

Each image is a small root filesystem assembled from Debian packages (`apt-get download`, read
with `dpkg-deb --fsys-tarfile`) and the release binaries, written as:

  <out>/<name>/          an OCI image layout (oci-layout, index.json, blobs/sha256/...)
  <out>/<name>.oci.tar   the same layout as one tar (`ctr -n k8s.io images import`)
  <out>/<name>.tar       a docker-archive (`docker load`, `kind load image-archive`)
  <out>/images.json      name, reference, digests, entrypoint, user of every image

Why Python and not umoci or crane (both well kept, both pinned in the tool notes): neither writes
both an OCI layout and a docker-archive from a directory without a registry or a root-owned,
time-stamped tree on disk, and reproducible digests need full control of every tar header
(order, owner, mode, mtime) and of the gzip header. The formats are small and specified
(image-spec v1.1 layout/manifest/config; the docker-archive `manifest.json`), and this script
uses only the standard library: tarfile, gzip, hashlib, json.

Reproducible: entries sorted, uid/gid 0 except the app's own directories, modes normalised,
mtime = SOURCE_DATE_EPOCH (default: the commit time of HEAD), no pax atime/ctime, gzip with
mtime 0 and no file name. The same commit, .deb versions and binaries give the same digests;
`hack/image check-reproducible` assembles every image twice and compares.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
PROG = "hack/image"

# The defaults of the image references: <registry>/<name>:<tag>, tag = the workspace version.
DEFAULT_REGISTRY = "ghcr.io/k8s-scheduler"
DEFAULT_SOURCE = "https://github.com/k8s-scheduler/k8s-scheduler"

NONROOT = 65532  # distroless' nonroot user and group
PAUSE_USER = 65535  # the upstream pause image's user
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CERTS = "/etc/ssl/certs/ca-certificates.crt"
HOME = "/home/nonroot"

# dpkg architecture -> (GNU multiarch triplet, OCI architecture).
ARCHES = {"amd64": ("x86_64-linux-gnu", "amd64"), "arm64": ("aarch64-linux-gnu", "arm64")}


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What an image is. docker/Dockerfile must agree (`hack/image check-dockerfiles`)."""

    name: str
    kind: str  # "rust" (a workspace binary on the base), "redis", "pause"
    title: str
    description: str
    entrypoint: tuple[str, ...]
    user: str
    workdir: str
    ports: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (PATH_ENV, f"SSL_CERT_FILE={CERTS}")
    crate: str = ""  # cargo package of a "rust" image
    binary: str = ""  # a "rust" image's binary when it is not <bin-dir>/<crate> (`hack/image binary`)
    ref: str = ""  # the reference when it is not <registry>/<name>:<tag> (`hack/image binary`)


def rust(name: str, title: str, description: str, ports: tuple[str, ...]) -> ImageSpec:
    return ImageSpec(
        name=name,
        kind="rust",
        title=title,
        description=description,
        entrypoint=(f"/usr/local/bin/{name}",),
        user=f"{NONROOT}:{NONROOT}",
        workdir=HOME,
        ports=ports,
        crate=name,
    )


IMAGES: dict[str, ImageSpec] = {
    s.name: s
    for s in [
        # Ports: what the chart's containers declare (metrics, probes / http, metrics).
        rust("controller", "k8s-scheduler controller", "The operator: UserSandbox, Template, UserDeployment",
             ("8080/tcp", "8081/tcp")),
        rust("apiserver", "k8s-scheduler apiserver", "The HTTP server and its embedded web UI",
             ("8081/tcp", "9090/tcp")),
        # Ports: the Templates' (examples/20-template-hello-web.yaml, 21-template-guestbook.yaml).
        rust("hello-web", "hello-web", "Example app: answers with its name, version and greeting", ("8080/tcp",)),
        rust("guestbook", "guestbook", "Example app: a guestbook keeping its entries in Redis", ("3000/tcp",)),
        ImageSpec(
            name="redis",
            kind="redis",
            title="redis",
            description="Redis from Debian's redis-server package, without persistence",
            # The configuration file is an argument of the entrypoint, so that a container's
            # `args` (e.g. ["--requirepass", "$(REDIS_PASSWORD)"]) add to it, not replace it.
            entrypoint=("/usr/bin/redis-server", "/etc/redis/redis.conf"),
            user=f"{NONROOT}:{NONROOT}",
            workdir="/data",
            ports=("6379/tcp",),
        ),
        ImageSpec(
            name="pause",
            kind="pause",
            title="pause",
            description="Holds a pod's namespaces and reaps its orphans (docker/pause.c)",
            entrypoint=("/pause",),
            user=f"{PAUSE_USER}:{PAUSE_USER}",
            workdir="/",
            env=(PATH_ENV,),
        ),
    ]
}

# The base of the "rust" and "redis" images, the distroless/cc idea: the loader, libc and
# libgcc_s, CA certificates, time zones, /etc/passwd with nonroot; no shell, no package manager.
BASE_PACKAGES = ["libc6", "libgcc-s1", "ca-certificates", "tzdata"]
# Patterns of what the base keeps from each package ({t}: the multiarch triplet). `*` never
# crosses a `/`. The libc6 files left out are debugging aids (memusage, pcprofile,
# malloc_debug, thread_db), gconv modules (iconv), binaries and ld.so.conf (no ldconfig: the
# loader searches /lib/{t} and /usr/lib/{t} without a cache).
BASE_KEEP = {
    "libc6": ["/lib*/ld-linux*.so.*", "/lib/{t}/lib*.so*", "/usr/lib/{t}/lib*.so*"],
    "libgcc-s1": ["/lib/{t}/libgcc_s.so.1", "/usr/lib/{t}/libgcc_s.so.1"],
    "tzdata": ["/usr/share/zoneinfo/**"],
}
BASE_DROP = ["libmemusage.so", "libpcprofile.so", "libc_malloc_debug.so.*", "libthread_db.so.*"]

PASSWD = f"""root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:{NONROOT}:{NONROOT}:nonroot:{HOME}:/sbin/nologin
"""
GROUP = f"""root:x:0:
nobody:x:65534:
nonroot:x:{NONROOT}:
"""
# Without this file glibc asks DNS before /etc/hosts.
NSSWITCH = """passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
"""
REDIS_CONF = """# hack/image: Redis as a cache in a container. No persistence (the data dies with the pod),
# no protected mode (a NetworkPolicy guards it; set a password with --requirepass in `args`),
# logs on stdout, never a daemon.
bind * -::*
port 6379
protected-mode no
save ""
appendonly no
dir /data
daemonize no
logfile ""
"""


# --------------------------------------------------------------------------------------------
# Messages and processes


class Failure(Exception):
    """An error for the user: printed as `hack/image: error: <message>`."""


def say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, what: str, cwd: Path | None = None, env: dict | None = None,
        capture: bool = True) -> str:
    """Runs `cmd`; on failure raises a Failure naming `what` with the command's stderr."""
    try:
        # Uncaptured output goes to stderr: stdout carries only the references and digests.
        p = subprocess.run(cmd, cwd=cwd, env=env, text=True,
                           stdout=subprocess.PIPE if capture else sys.stderr,
                           stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise Failure(f"{what}: {cmd[0]} is not installed")
    if p.returncode != 0:
        detail = (p.stderr or "").strip()
        raise Failure(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}" + (f"\n{detail}" if detail else ""))
    return p.stdout or ""


# --------------------------------------------------------------------------------------------
# Facts of the build: version, revision, time


@dataclasses.dataclass
class Facts:
    version: str
    tag: str
    registry: str
    revision: str
    source: str
    epoch: int
    arch: str  # dpkg architecture
    triplet: str
    oci_arch: str

    def ref(self, name: str) -> str:
        return f"{self.registry}/{name}:{self.tag}"

    @property
    def created(self) -> str:
        return datetime.datetime.fromtimestamp(self.epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def workspace_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def git(*args: str) -> str | None:
    """git's output in the repository, or None without git or a repository (a Docker build)."""
    try:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def facts(args: argparse.Namespace) -> Facts:
    version = workspace_version()
    revision = os.environ.get("IMAGE_REVISION") or git("rev-parse", "HEAD")
    if revision is None:
        raise Failure("no git repository to read the revision from: set IMAGE_REVISION and SOURCE_DATE_EPOCH")
    # The label says when the binaries come from uncommitted sources.
    if "IMAGE_REVISION" not in os.environ and git("status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    epoch_env = os.environ.get("SOURCE_DATE_EPOCH", "").strip() or git("log", "-1", "--format=%ct")
    if not epoch_env or not epoch_env.isdigit():
        raise Failure(f"SOURCE_DATE_EPOCH={epoch_env!r} is not a number of seconds")
    epoch = int(epoch_env)
    arch = run(["dpkg", "--print-architecture"], what="reading the Debian architecture").strip()
    if arch not in ARCHES:
        raise Failure(f"architecture {arch} is not supported (known: {', '.join(ARCHES)})")
    triplet, oci_arch = ARCHES[arch]
    return Facts(
        version=version,
        tag=getattr(args, "tag", None) or os.environ.get("IMAGE_TAG") or version,
        registry=(getattr(args, "registry", None) or os.environ.get("IMAGE_REGISTRY") or DEFAULT_REGISTRY).rstrip("/"),
        revision=revision,
        source=os.environ.get("IMAGE_SOURCE", DEFAULT_SOURCE),
        epoch=epoch,
        arch=arch,
        triplet=triplet,
        oci_arch=oci_arch,
    )


# --------------------------------------------------------------------------------------------
# Debian packages


def deb_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "k8s-scheduler" / "debs"


def deb_path(name: str) -> str:
    """The absolute path of a member of a package's data tar (`./usr/bin/x` -> `/usr/bin/x`)."""
    return str(PurePosixPath("/", name.removeprefix("./")))


class Deb:
    """A downloaded package: its files by absolute path (TarInfo, bytes)."""

    def __init__(self, name: str, version: str, path: Path):
        self.name, self.version, self.path = name, version, path
        raw = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True)
        if raw.returncode != 0:
            raise Failure(f"dpkg-deb --fsys-tarfile {path} failed: {raw.stderr.decode(errors='replace').strip()} "
                          f"(delete the file to download it again)")
        self.files: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
        with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as t:
            for m in t.getmembers():
                p = deb_path(m.name)
                data = t.extractfile(m).read() if m.isreg() else b""
                self.files[p] = (m, data)

    def select(self, patterns: list[str], drop: list[str] = ()) -> list[str]:
        """Paths matching one of `patterns` (`**` as the last part: everything below)."""
        out = []
        for p, (m, _) in self.files.items():
            if m.isdir() or any(PurePosixPath(p).match(d) for d in drop):
                continue
            for pat in patterns:
                if pat.endswith("/**"):
                    if p.startswith(pat[:-2]):
                        out.append(p)
                        break
                elif PurePosixPath(p).match(pat):
                    out.append(p)
                    break
        return sorted(out)


class Debs:
    """Resolves, downloads (cached by version) and opens Debian packages."""

    def __init__(self) -> None:
        self.opened: dict[str, Deb] = {}
        self.cache = deb_cache()

    def candidate(self, name: str) -> str:
        out = run(["apt-cache", "policy", name], what=f"apt-cache policy {name}")
        m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
        if not m or m.group(1) == "(none)":
            raise Failure(f"no version of the Debian package {name} is known to apt: run `apt-get update` (as root)")
        return m.group(1)

    def get(self, name: str) -> Deb:
        if name in self.opened:
            return self.opened[name]
        version = self.candidate(name)
        quoted = version.replace(":", "%3a")
        self.cache.mkdir(parents=True, exist_ok=True)
        found = sorted(self.cache.glob(f"{name}_{quoted}_*.deb"))
        if not found:
            say(f"downloading {name} {version}")
            tmp = Path(tempfile.mkdtemp(prefix="download-", dir=self.cache))
            try:
                p = subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=tmp, capture_output=True, text=True)
                if p.returncode != 0:
                    raise Failure(
                        f"apt-get download {name}={version} failed: {p.stderr.strip()}\n"
                        f"Run `apt-get update` (as root) and try again; the package lists may be stale.")
                debs = list(tmp.glob("*.deb"))
                if len(debs) != 1:
                    raise Failure(f"apt-get download {name}={version} left {len(debs)} files in {tmp}")
                target = self.cache / debs[0].name
                os.replace(debs[0], target)
                found = [target]
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        deb = Deb(name, version, found[0])
        self.opened[name] = deb
        return deb

    def owner_of(self, lib: str, triplet: str) -> str:
        """The installed package holding the library `lib` (a path ldd printed)."""
        base = PurePosixPath(lib).name
        candidates = [lib]
        # usrmerge: ldd prints /lib/... for files that packages may list as /usr/lib/... and back.
        if lib.startswith("/usr/"):
            candidates.append(lib[4:])
        else:
            candidates.append("/usr" + lib)
        for c in candidates:
            p = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if p.returncode == 0:
                return p.stdout.split(":", 1)[0].strip()
        p = subprocess.run(["dpkg", "-S", f"*/{triplet}/{base}"], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            pkg, _, path = line.partition(": ")
            if path.endswith(f"/{triplet}/{base}"):
                return pkg.split(":", 1)[0].strip()
        raise Failure(f"no installed Debian package holds {lib} (dpkg -S): install the package that provides {base}")


# --------------------------------------------------------------------------------------------
# File trees and layers


@dataclasses.dataclass
class Node:
    kind: str  # "dir", "file", "symlink"
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    link: str = ""


class Tree:
    """A layer's files by absolute path. Modes are normalised so the source's umask and owner
    never reach the image: directories 0755, files 0755 when executable else 0644."""

    def __init__(self, description: str):
        self.description = description
        self.nodes: dict[str, Node] = {}

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.nodes[path] = Node("dir", mode, uid, gid)

    def file(self, path: str, data: bytes, executable: bool = False, mode: int | None = None) -> None:
        self.nodes[path] = Node("file", mode if mode is not None else (0o755 if executable else 0o644), data=data)

    def symlink(self, path: str, target: str) -> None:
        self.nodes[path] = Node("symlink", 0o777, link=target)

    def from_deb(self, deb: Deb, paths: list[str]) -> None:
        """Copies `paths` of `deb`; a symlink brings its target (within the package) along."""
        todo = list(paths)
        while todo:
            p = todo.pop()
            if p in self.nodes:
                continue
            if p not in deb.files:
                raise Failure(f"{deb.name} {deb.version} has no {p}")
            m, data = deb.files[p]
            if m.issym():
                self.symlink(p, m.linkname)
                target = str(PurePosixPath(os.path.normpath(PurePosixPath(p).parent / m.linkname)))
                if target in deb.files and not deb.files[target][0].isdir():
                    todo.append(target)
            elif m.islnk():
                target = deb_path(m.linkname)
                self.file(p, deb.files[target][1], executable=bool(deb.files[target][0].mode & 0o111))
            elif m.isreg():
                self.file(p, data, executable=bool(m.mode & 0o111))
            elif m.isdir():
                self.dir(p)
            else:
                raise Failure(f"{deb.name}: {p} is neither a file, a directory nor a link")

    def copyright(self, deb: Deb) -> None:
        p = f"/usr/share/doc/{deb.name}/copyright"
        if p in deb.files and deb.files[p][0].isreg():
            self.file(p, deb.files[p][1])

    def resolve(self, path: str, others: list["Tree"] = ()) -> Node | None:
        for t in [self, *others]:
            if path in t.nodes:
                return t.nodes[path]
        return None

    def tar(self, epoch: int) -> bytes:
        """The layer as a deterministic tar: sorted, parents first, fixed owners and times."""
        nodes = dict(self.nodes)
        for p in list(nodes):
            for parent in PurePosixPath(p).parents:
                sp = str(parent)
                if sp != "/" and sp not in nodes:
                    nodes[sp] = Node("dir", 0o755)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for p in sorted(nodes):
                n = nodes[p]
                info = tarfile.TarInfo(p.lstrip("/"))
                info.mtime = epoch
                info.mode = n.mode
                info.uid, info.gid = n.uid, n.gid
                info.uname = info.gname = ""
                if n.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                elif n.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = n.link
                    t.addfile(info)
                else:
                    info.size = len(n.data)
                    t.addfile(info, io.BytesIO(n.data))
        return buf.getvalue()


def gz(data: bytes) -> bytes:
    # mtime 0 and no file name in the header: the output depends on the input only (and on
    # zlib's version: a different zlib may compress differently; the diff_id stays the same).
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0, filename="") as g:
        g.write(data)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Assembling images


def ldd(binary: Path) -> list[str]:
    """The libraries the loader resolves for `binary` (paths), or [] for a static binary."""
    p = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    out = p.stdout + p.stderr
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    if p.returncode != 0:
        raise Failure(f"ldd {binary} failed: {out.strip()}")
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            raise Failure(f"{binary.name} needs {line.split()[0]}, which this machine lacks: install the package "
                          f"that provides it, so that hack/image can find the Debian package to take it from")
        m = re.match(r"(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append(m.group(1))
    return libs


class Builder:
    def __init__(self, f: Facts, bin_dir: Path):
        self.f = f
        self.bin_dir = bin_dir
        self.debs = Debs()
        self._base: Tree | None = None

    def base(self) -> Tree:
        """The shared base layer (one blob for every image that has it)."""
        if self._base:
            return self._base
        t = self.f.triplet
        debs = [self.debs.get(n) for n in BASE_PACKAGES]
        versions = ", ".join(f"{d.name} {d.version}" for d in debs)
        tree = Tree(f"base: {versions}; /etc/passwd with nonroot {NONROOT}")
        for d in debs:
            keep = [p.format(t=t) for p in BASE_KEEP.get(d.name, [])]
            if keep:
                tree.from_deb(d, d.select(keep, BASE_DROP))
            tree.copyright(d)
        # The CA bundle as update-ca-certificates would make it (the package only ships the
        # certificates; its postinst builds the bundle): every certificate, in name order.
        ca = self.debs.get("ca-certificates")
        certs = [p for p in ca.select(["/usr/share/ca-certificates/mozilla/*.crt"])]
        if not certs:
            raise Failure(f"ca-certificates {ca.version} has no certificates under /usr/share/ca-certificates")
        bundle = b"".join(ca.files[p][1].rstrip(b"\n") + b"\n" for p in certs)
        tree.file(CERTS, bundle)
        tree.file("/etc/passwd", PASSWD.encode())
        tree.file("/etc/group", GROUP.encode())
        tree.file("/etc/nsswitch.conf", NSSWITCH.encode())
        tree.dir("/tmp", 0o1777)
        tree.dir("/root", 0o700)
        tree.dir("/home", 0o755)
        tree.dir(HOME, 0o700, NONROOT, NONROOT)
        self._base = tree
        return tree

    def add_libraries(self, tree: Tree, binary: Path, base: Tree, shown_as: str) -> None:
        """Adds to `tree` every library of `binary` that `base` lacks, from its Debian package."""
        for lib in ldd(binary):
            name = PurePosixPath(lib).name
            dirs = ["/lib64", "/lib", f"/lib/{self.f.triplet}", f"/usr/lib/{self.f.triplet}", "/usr/lib"]
            if any(tree.resolve(f"{d}/{name}", [base]) for d in dirs):
                continue
            pkg = self.debs.owner_of(lib, self.f.triplet)
            deb = self.debs.get(pkg)
            paths = [p for p in deb.files if PurePosixPath(p).name == name and PurePosixPath(p).parent.as_posix() in dirs]
            if not paths:
                raise Failure(f"{shown_as} needs {name}; {pkg} {deb.version} does not ship it")
            tree.from_deb(deb, paths)
            tree.copyright(deb)
            say(f"  {shown_as}: {name} from {pkg} {deb.version}")

    def layers(self, spec: ImageSpec) -> list[Tree]:
        if spec.kind == "pause":
            pause = self.bin_dir / "pause"
            tree = Tree("pause: docker/pause.c (gcc -static -Os)")
            tree.file("/pause", pause.read_bytes(), executable=True)
            return [tree]
        base = self.base()
        if spec.kind == "rust":
            binary = Path(spec.binary) if spec.binary else self.bin_dir / spec.crate
            if not binary.is_file():
                raise Failure(f"{binary} is missing: build it with cargo build -p {spec.crate} (or drop --skip-build)")
            # Nothing of the binary's path: the description is part of the config digest.
            what = binary.name if spec.binary else f"{spec.crate} {self.f.version}"
            tree = Tree(f"{spec.name}: {what}")
            tree.file(spec.entrypoint[0], binary.read_bytes(), executable=True)
            self.add_libraries(tree, binary, base, spec.name)
            return [base, tree]
        if spec.kind == "redis":
            tools, server = self.debs.get("redis-tools"), self.debs.get("redis-server")
            tree = Tree(f"redis: redis-tools {tools.version}, redis-server {server.version}")
            # redis-server is a link to redis-check-rdb, which starts the server by argv[0].
            tree.from_deb(server, ["/usr/bin/redis-server"])
            tree.from_deb(tools, ["/usr/bin/redis-check-rdb"])
            tree.copyright(tools)
            tree.copyright(server)
            tree.file("/etc/redis/redis.conf", REDIS_CONF.encode())
            tree.dir("/data", 0o750, NONROOT, NONROOT)
            with tempfile.TemporaryDirectory() as tmp:
                b = Path(tmp) / "redis-check-rdb"
                b.write_bytes(tree.nodes["/usr/bin/redis-check-rdb"].data)
                b.chmod(0o755)
                self.add_libraries(tree, b, base, "redis")
            return [base, tree]
        raise Failure(f"unknown image kind {spec.kind}")

    def config(self, spec: ImageSpec, diff_ids: list[str], layers: list[Tree]) -> dict:
        return {
            "created": self.f.created,
            "architecture": self.f.oci_arch,
            "os": "linux",
            "config": {
                "User": spec.user,
                "Env": list(spec.env),
                "Entrypoint": list(spec.entrypoint),
                **({"Cmd": list(spec.cmd)} if spec.cmd else {}),
                "WorkingDir": spec.workdir,
                **({"ExposedPorts": {p: {} for p in spec.ports}} if spec.ports else {}),
                "Labels": self.labels(spec),
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": self.f.created, "created_by": f"hack/image: {t.description}"} for t in layers],
        }

    def labels(self, spec: ImageSpec) -> dict:
        return labels(spec, self.f.source, self.f.revision, self.f.tag)


def labels(spec: ImageSpec, source: str, revision: str, version: str) -> dict:
    """The image's OCI labels (annotation keys of the image spec, as config labels)."""
    return {
        "org.opencontainers.image.title": spec.title,
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclasses.dataclass
class Built:
    name: str
    ref: str
    digest: str
    manifest: bytes
    config: bytes
    layers: list[tuple[str, bytes]]  # (digest, gzip bytes)
    entry: dict


def assemble(b: Builder, spec: ImageSpec, layer_cache: dict) -> Built:
    trees = b.layers(spec)
    blobs = []
    diff_ids = []
    for t in trees:
        # The base is one Tree object for every image: tar and gzip it once. The cache holds
        # the Tree too, so that its id is never reused by another layer's Tree.
        if id(t) not in layer_cache:
            raw = t.tar(b.f.epoch)
            layer_cache[id(t)] = (t, sha256(raw), gz(raw))
        _, diff_id, blob = layer_cache[id(t)]
        diff_ids.append(diff_id)
        blobs.append((sha256(blob), blob))
    config = canonical(b.config(spec, diff_ids, trees))
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(blob)}
                   for d, blob in blobs],
    })
    ref = spec.ref or b.f.ref(spec.name)
    digest = sha256(manifest)
    entry = {
        "name": spec.name,
        "ref": ref,
        "digest": digest,
        "config": sha256(config),
        "layers": [d for d, _ in blobs],
        "diff_ids": diff_ids,
        "size": len(manifest) + len(config) + sum(len(x) for _, x in blobs),
        "entrypoint": list(spec.entrypoint),
        "user": spec.user,
        "workdir": spec.workdir,
        "ports": list(spec.ports),
    }
    return Built(spec.name, ref, digest, manifest, config, blobs, entry)


def index_json(img: Built, f: Facts) -> bytes:
    return canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.digest,
            "size": len(img.manifest),
            "platform": {"architecture": f.oci_arch, "os": "linux"},
            "annotations": {
                # containerd (ctr import, kind) names the image after this one...
                "io.containerd.image.name": img.ref,
                # ...skopeo and crane select `oci:<dir>:<tag>` by this one.
                "org.opencontainers.image.ref.name": img.ref.rsplit(":", 1)[1],
            },
        }],
    })


def blob_files(img: Built) -> list[tuple[str, bytes]]:
    out = {f"blobs/sha256/{sha256(img.manifest)[7:]}": img.manifest,
           f"blobs/sha256/{sha256(img.config)[7:]}": img.config}
    for d, blob in img.layers:
        out[f"blobs/sha256/{d[7:]}"] = blob
    return sorted(out.items())


def write_tar(path: Path, files: list[tuple[str, bytes]], epoch: int) -> None:
    """A deterministic tar of `files` (with their directories) at `path`."""
    dirs = sorted({str(p) + "/" for name, _ in files for p in PurePosixPath(name).parents if str(p) != "."})
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime, info.uname, info.gname = tarfile.DIRTYPE, 0o755, epoch, "", ""
            t.addfile(info)
        for name, data in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uname, info.gname = len(data), 0o644, epoch, "", ""
            t.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def write_outputs(img: Built, f: Facts, out: Path) -> None:
    layout_files = [("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})), ("index.json", index_json(img, f))]
    layout_files += blob_files(img)
    # The layout directory, written afresh.
    d = out / img.name
    if d.exists():
        shutil.rmtree(d)
    for name, data in layout_files:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    write_tar(out / f"{img.name}.oci.tar", layout_files, f.epoch)
    # The docker-archive: manifest.json naming the config and the layers (gzip: docker load,
    # containerd and kind detect the compression), blobs at the paths docker save uses since 25.
    cfg = f"blobs/sha256/{sha256(img.config)[7:]}"
    docker_manifest = json.dumps([{
        "Config": cfg,
        "RepoTags": [img.ref],
        "Layers": [f"blobs/sha256/{dg[7:]}" for dg, _ in img.layers],
    }], separators=(",", ":")).encode()
    docker_files = [("manifest.json", docker_manifest), (cfg, img.config)]
    docker_files += [(f"blobs/sha256/{dg[7:]}", blob) for dg, blob in img.layers]
    write_tar(out / f"{img.name}.tar", sorted(dict(docker_files).items()), f.epoch)


# --------------------------------------------------------------------------------------------
# Building the binaries


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/k8s-scheduler/cargo-target")


def profile_dir(profile: str) -> Path:
    """Where cargo puts the binaries of `profile` (dev builds land in debug/)."""
    return target_dir() / ("debug" if profile == "dev" else profile)


def build_binaries(names: list[str], f: Facts, profile: str = "release") -> Path:
    """Builds the UI (when the apiserver is wanted), the binaries and pause."""
    bin_dir = profile_dir(profile)
    crates = [IMAGES[n].crate for n in names if IMAGES[n].kind == "rust"]
    if "apiserver" in crates:
        # The release apiserver embeds web/dist at compile time (rust-embed in
        # apiserver/src/http/ui.rs): build it first; web/scripts/build skips an up-to-date dist.
        say("building the web UI (web/scripts/build)")
        run([str(ROOT / "web/scripts/build")], what="web/scripts/build", capture=False)
    if crates:
        cmd = ["cargo", "build", "--profile", profile, "--locked"] + [a for c in crates for a in ("-p", c)]
        say(f"{' '.join(cmd)} (CARGO_TARGET_DIR={target_dir()})")
        started = time.monotonic()
        run(cmd, what="cargo build", cwd=ROOT, capture=False)
        say(f"cargo build took {time.monotonic() - started:.0f}s")
    if "pause" in names:
        build_pause(bin_dir, f)
    return bin_dir


def build_pause(bin_dir: Path, f: Facts) -> None:
    src = ROOT / "docker/pause.c"
    out = bin_dir / "pause"
    bin_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", f'-DVERSION="{f.tag}"', "-o", str(out), str(src)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise Failure(f"compiling docker/pause.c failed: {p.stderr.strip()}\n"
                      f"(a static build needs gcc and libc6-dev: apt-get install gcc libc6-dev)")


def check_ui_embedded(bin_dir: Path) -> None:
    index = ROOT / "web/dist/index.html"
    binary = bin_dir / "apiserver"
    if not index.is_file():
        raise Failure("web/dist/index.html is missing: run web/scripts/build")
    if index.read_bytes() not in binary.read_bytes():
        raise Failure(f"{binary} does not embed web/dist/index.html: it was built before the UI; "
                      f"touch apiserver/src/http/ui.rs and build again")


# --------------------------------------------------------------------------------------------
# Commands


def selected(only: str | None) -> list[str]:
    if not only:
        return list(IMAGES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        raise Failure(f"unknown image {', '.join(unknown)} (known: {', '.join(IMAGES)})")
    return names


def assemble_all(names: list[str], f: Facts, bin_dir: Path, out: Path) -> list[Built]:
    out.mkdir(parents=True, exist_ok=True)
    b = Builder(f, bin_dir)
    cache: dict = {}
    built = []
    for n in names:
        started = time.monotonic()
        img = assemble(b, IMAGES[n], cache)
        write_outputs(img, f, out)
        built.append(img)
        say(f"{img.ref} {img.digest} ({img.entry['size'] / 1e6:.1f} MB, {time.monotonic() - started:.1f}s)")
    summary = {"revision": f.revision, "created": f.created, "images": [i.entry for i in built]}
    (out / "images.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    pkgs = sorted({(d.name, d.version, d.path.name) for d in b.debs.opened.values()})
    (out / "packages.txt").write_text("".join(f"{n} {v} {p}\n" for n, v, p in pkgs))
    return built


def cmd_build(args: argparse.Namespace) -> None:
    names = selected(args.only)
    f = facts(args)
    if args.bin_dir:
        bin_dir = Path(args.bin_dir)
    else:
        bin_dir = profile_dir(args.profile) if args.skip_build else build_binaries(names, f, args.profile)
    if "pause" in names and not (bin_dir / "pause").exists():
        build_pause(bin_dir, f)
    if "apiserver" in names:
        check_ui_embedded(bin_dir)
    started = time.monotonic()
    built = assemble_all(names, f, bin_dir, Path(args.out))
    say(f"assembled {len(built)} images into {args.out} in {time.monotonic() - started:.1f}s")
    for img in built:
        print(f"{img.ref}\t{img.digest}")


def cmd_binary(args: argparse.Namespace) -> None:
    """Wraps any binary (e.g. a static Go program) in an image on the same base, for the tools
    hack/cluster runs as pods. Libraries the binary needs beyond the base come from their
    Debian packages, as for the project's images."""
    f = facts(args)
    binary = Path(args.binary).resolve()
    if not binary.is_file():
        raise Failure(f"{binary} is not a file")
    ref = args.ref
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9._-]*", ref):
        raise Failure(f"--ref {ref!r} is not a reference with a tag (registry/name:tag)")
    name = args.name or ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    spec = ImageSpec(
        name=name, kind="rust", title=name, description=args.description or f"{binary.name} on the k8s-scheduler base",
        entrypoint=(args.path or f"/usr/local/bin/{binary.name}", *args.arg), user=args.user, workdir=HOME,
        ports=tuple(p if "/" in p else p + "/tcp" for p in args.port), binary=str(binary), ref=ref)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img = assemble(Builder(f, binary.parent), spec, {})
    write_outputs(img, f, out)
    say(f"{img.ref} {img.digest} ({img.entry['size'] / 1e6:.1f} MB) in {out}/{name}{{,.tar,.oci.tar}}")
    print(f"{img.ref}\t{img.digest}")


def cmd_check_reproducible(args: argparse.Namespace) -> None:
    """Assembles every image twice, in separate processes with another time zone, umask, hash
    seed and fresh copies of the binaries (new mtimes), and compares every digest."""
    names = selected(args.only)
    f = facts(args)
    if args.bin_dir:
        bin_dir = Path(args.bin_dir)
    else:
        bin_dir = profile_dir(args.profile) if args.skip_build else build_binaries(names, f, args.profile)
    if "pause" in names and not (bin_dir / "pause").exists():
        build_pause(bin_dir, f)
    with tempfile.TemporaryDirectory(prefix="image-repro-") as tmp:
        tmp = Path(tmp)
        copy = tmp / "bin"
        copy.mkdir()
        for n in names:
            src = bin_dir / (IMAGES[n].crate or "pause") if IMAGES[n].kind in ("rust", "pause") else None
            if src:
                shutil.copy(src, copy / src.name)  # new mtime, same bytes
        results = []
        for i, (dirname, bins, tz, umask) in enumerate([("a", bin_dir, "UTC", "022"), ("b", copy, "Asia/Kolkata", "077")]):
            out = tmp / dirname
            env = dict(os.environ, TZ=tz, PYTHONHASHSEED=str(i + 1))
            cmd = [sys.executable, str(Path(__file__)), "build", "--bin-dir", str(bins), "--out", str(out),
                   "--only", ",".join(names if i == 0 else list(reversed(names)))]
            say(f"assembly {dirname}: TZ={tz} umask {umask}")
            p = subprocess.run(["sh", "-c", f'umask {umask} && exec "$@"', "sh", *cmd], env=env)
            if p.returncode != 0:
                raise Failure(f"assembly {dirname} failed")
            results.append(json.loads((out / "images.json").read_text()))
        a = {i["name"]: i for i in results[0]["images"]}
        b = {i["name"]: i for i in results[1]["images"]}
        bad = []
        for n in names:
            same = a[n]["digest"] == b[n]["digest"]
            say(f"{n}: {a[n]['digest']} {'==' if same else '!='} {b[n]['digest']}")
            if not same:
                diffs = [k for k in ("config", "layers", "diff_ids") if a[n][k] != b[n][k]]
                bad.append(f"{n} (differs in {', '.join(diffs)})")
            for tarname in (f"{n}.tar", f"{n}.oci.tar"):
                ha = hashlib.sha256((tmp / "a" / tarname).read_bytes()).hexdigest()
                hb = hashlib.sha256((tmp / "b" / tarname).read_bytes()).hexdigest()
                if ha != hb:
                    bad.append(f"{tarname} (the archive bytes differ)")
        if bad:
            raise Failure("not reproducible: " + "; ".join(bad))
        say(f"reproducible: {len(names)} images, the same digests and archives twice")


# ---- Dockerfile agreement


def parse_dockerfile(text: str) -> dict[str, dict]:
    """The facts of every `FROM scratch AS <name>` stage: user, entrypoint, cmd, workdir, ports,
    env, label keys. Understands what docker/Dockerfile uses: line continuations, comments,
    exec-form ENTRYPOINT/CMD, `key=value` ENV and LABEL, ARG defaults in LABEL values."""
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages: dict[str, dict] = {}
    stage = None
    for line in lines:
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            if not m:
                raise Failure(f"Dockerfile: cannot read FROM {rest}")
            stage = None
            if m.group(1) == "scratch" and m.group(2):
                stage = stages.setdefault(m.group(2), {"user": None, "entrypoint": None, "cmd": [], "workdir": "/",
                                                       "ports": [], "env": [], "labels": {}})
            continue
        if stage is None:
            continue
        if word == "USER":
            stage["user"] = rest
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
            except json.JSONDecodeError:
                raise Failure(f"Dockerfile: {word} must be in exec (JSON) form: {rest}")
            stage[word.lower()] = value
        elif word == "WORKDIR":
            stage["workdir"] = rest
        elif word == "EXPOSE":
            stage["ports"] += [p if "/" in p else p + "/tcp" for p in rest.split()]
        elif word == "ENV":
            stage["env"] += [kv.replace('"', "") for kv in re.findall(r'\S+="[^"]*"|\S+=\S+', rest)]
        elif word == "LABEL":
            for kv in re.findall(r'\S+="[^"]*"|\S+=\S+', rest):
                k, v = kv.split("=", 1)
                stage["labels"][k] = v.strip('"')
    return stages


def dockerfile_differences(stages: dict[str, dict], configs: dict[str, dict]) -> list[str]:
    """What docker/Dockerfile says differently from the image configs hack/image writes, one
    line per difference. Label values set from build arguments (`${...}`) are compared by key."""
    diffs = []
    for name, config in configs.items():
        c = config["config"]
        st = stages.get(name)
        if st is None:
            diffs.append(f"{name}: no `FROM scratch AS {name}` stage")
            continue
        want = {
            "USER": c.get("User", ""),
            "ENTRYPOINT": c.get("Entrypoint") or [],
            "CMD": c.get("Cmd") or [],
            "WORKDIR": c.get("WorkingDir") or "/",
            "EXPOSE": sorted(c.get("ExposedPorts", {})),
            "ENV": sorted(c.get("Env", [])),
        }
        got = {"USER": st["user"], "ENTRYPOINT": st["entrypoint"], "CMD": st["cmd"], "WORKDIR": st["workdir"],
               "EXPOSE": sorted(st["ports"]), "ENV": sorted(st["env"])}
        for k, v in want.items():
            if got[k] != v:
                diffs.append(f"{name}: {k} is {got[k]!r} in the Dockerfile, {v!r} in hack/image")
        ours = c.get("Labels", {})
        if sorted(st["labels"]) != sorted(ours):
            diffs.append(f"{name}: LABEL keys are {sorted(st['labels'])} in the Dockerfile, {sorted(ours)} in hack/image")
        for k, v in st["labels"].items():
            if "$" not in v and k in ours and ours[k] != v:
                diffs.append(f"{name}: LABEL {k} is {v!r} in the Dockerfile, {ours[k]!r} in hack/image")
    return diffs


def written_configs(out: Path, f: Facts) -> tuple[dict[str, dict], list[str]]:
    """The config of every image: from its layout under `out` when built, else as hack/image
    would write it. Returns the configs and where each came from."""
    configs, sources = {}, []
    b = Builder(f, Path("/nonexistent"))
    for name, spec in IMAGES.items():
        layout = out / name
        if (layout / "index.json").exists():
            index = json.loads((layout / "index.json").read_text())
            blob = lambda d: (layout / "blobs/sha256" / d.split(":", 1)[1]).read_bytes()  # noqa: E731
            manifest = json.loads(blob(index["manifests"][0]["digest"]))
            configs[name] = json.loads(blob(manifest["config"]["digest"]))
            sources.append(f"{name} from {layout}")
        else:
            configs[name] = b.config(spec, [], [])
            sources.append(f"{name} from its spec (not built)")
    return configs, sources


def cmd_check_dockerfiles(args: argparse.Namespace) -> None:
    path = Path(args.dockerfile)
    text = path.read_text()
    configs, sources = written_configs(Path(args.out), facts(args))
    diffs = dockerfile_differences(parse_dockerfile(text), configs)
    if diffs:
        raise Failure(f"{path} and hack/image disagree:\n  " + "\n  ".join(diffs) +
                      "\n(change both: ImageSpec in hack/image.py and the stage in the Dockerfile; rebuild)")
    # The check must be able to fail: a Dockerfile with another USER is refused.
    mutated = re.sub(r"^USER .*$", "USER 0:0", text, count=1, flags=re.M)
    if not dockerfile_differences(parse_dockerfile(mutated), configs):
        raise Failure("self-test: a Dockerfile whose first USER is 0:0 was not reported")
    say(f"{path} agrees with hack/image on USER, ENTRYPOINT, CMD, WORKDIR, EXPOSE, ENV and LABELs of "
        f"{len(configs)} images ({'; '.join(sources)})")


# ---- Unpacking and running the images


def extract(layer: bytes, dest: Path) -> None:
    """Extracts one of our own layers (no whiteouts) with owners and modes as they are: the
    "fully_trusted" filter keeps /tmp's sticky bit (Pythons without filters behave so anyway)."""
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        if hasattr(tarfile, "fully_trusted_filter"):
            t.extractall(dest, numeric_owner=True, filter="fully_trusted")
        else:
            t.extractall(dest, numeric_owner=True)


def unpack(layout: Path, dest: Path) -> dict:
    """Applies the layers of the OCI layout `layout` to `dest` (as root: owners kept); returns
    the image config."""
    index = json.loads((layout / "index.json").read_text())
    blob = lambda d: (layout / "blobs/sha256" / d.split(":", 1)[1]).read_bytes()  # noqa: E731
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    dest.mkdir(parents=True, exist_ok=True)
    for i, layer in enumerate(manifest["layers"]):
        data = blob(layer["digest"])
        if sha256(data) != layer["digest"]:
            raise Failure(f"{layout}: layer {layer['digest']} does not match its digest")
        raw = gzip.decompress(data)
        if sha256(raw) != config["rootfs"]["diff_ids"][i]:
            raise Failure(f"{layout}: layer {i} does not match its diff_id")
        extract(raw, dest)
    return config


def cmd_unpack(args: argparse.Namespace) -> None:
    config = unpack(Path(args.out) / args.name, Path(args.dest))
    say(f"unpacked {args.name} into {args.dest}: entrypoint {config['config']['Entrypoint']}, "
        f"user {config['config']['User']}")


def cmd_rootfs(args: argparse.Namespace) -> None:
    """Writes the file system of image NAME into DEST (docker/Dockerfile's rootfs stage)."""
    spec = IMAGES[selected(args.name)[0]]
    f = facts(args)
    b = Builder(f, Path(args.bin_dir))
    cache: dict = {}
    img = assemble(b, spec, cache)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for _, blob in img.layers:
        extract(gzip.decompress(blob), dest)
    say(f"wrote the file system of {spec.name} into {dest}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Container:
    """An image's entrypoint in a chroot of its unpacked rootfs, as its user, PID 1 of new mount
    and PID namespaces, with /proc and a few devices (what runc would give it)."""

    def __init__(self, rootfs: Path, config: dict, args: list[str] = (), env: dict | None = None):
        c = config["config"]
        for d in ("proc", "dev"):
            (rootfs / d).mkdir(exist_ok=True)
        for dev in ("null", "zero", "urandom"):
            (rootfs / "dev" / dev).touch()
        root = shlex.quote(str(rootfs))
        binds = " && ".join(f"mount --bind /dev/{d} {root}/dev/{d}" for d in ("null", "zero", "urandom"))
        script = (f"mount -t proc proc {root}/proc && {binds} && "
                  f"exec chroot --userspec={shlex.quote(c['User'])} {root} {shlex.join([*c['Entrypoint'], *args])}")
        full_env = {k: v for k, v in (e.split("=", 1) for e in c.get("Env", []))}
        full_env.update(env or {})
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", script],
            env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def uid_gid(self) -> str:
        """`uid:gid` (real) of the running app, from /proc."""
        pid = self.app_pid()
        status = Path(f"/proc/{pid}/status").read_text() if pid else ""
        ids = {k: v.split()[0] for k, v in re.findall(r"^(Uid|Gid):\s+(.*)$", status, re.M)}
        return f"{ids.get('Uid')}:{ids.get('Gid')}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def app_pid(self) -> int | None:
        """The host PID of the app: the child unshare forked (which became the entrypoint)."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def stop(self, timeout: float = 10) -> int:
        """Sends SIGTERM to the app, PID 1 of its namespace as in a pod (unshare does not forward
        it, and --kill-child does not survive chroot's change of user); returns its exit code.
        PID 1 only receives the signals it handles: this checks that the app does."""
        pid = self.app_pid()
        if pid is not None and self.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure(f"did not stop within {timeout}s of SIGTERM:\n{self.output()}")


def http(method: str, url: str, body: bytes | None = None, timeout: float = 20) -> tuple[int, str]:
    """An HTTP request retried until the server answers or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise Failure(f"{method} {url}: no answer within {timeout}s")
            time.sleep(0.2)


def expect(cond: bool, what: str, c: Container | None = None) -> None:
    if not cond:
        raise Failure(what + (f"\n--- output:\n{c.output()}" if c else ""))


def cmd_check_rootfs(args: argparse.Namespace) -> None:
    """Runs every image's entrypoint from its unpacked layers, as its user, and talks to it."""
    if os.geteuid() != 0:
        raise Failure("check-rootfs needs root (unshare, mount, chroot)")
    out = Path(args.out)
    names = selected(args.only)
    with tempfile.TemporaryDirectory(prefix="image-rootfs-") as tmp:
        roots = {}
        for n in names:
            if not (out / n / "index.json").exists():
                raise Failure(f"{out / n} is not an image layout: run hack/image first")
            roots[n] = (Path(tmp) / n, unpack(out / n, Path(tmp) / n))
        running: list[Container] = []
        try:
            for n in names:
                root, config = roots[n]
                started = time.monotonic()
                if n in ("controller", "apiserver"):
                    c = Container(root, config, ["--version"])
                    code = c.proc.wait(20)
                    expect(code == 0 and n in c.output(), f"{n} --version failed (exit {code})", c)
                if n == "apiserver":
                    port, metrics = free_port(), free_port()
                    c = Container(root, config, env={
                        "DEV_MODE": "true", "REACT_UI": "true", "SQLITE_PATH": "/tmp/k8s-scheduler.db",
                        "SERVER_ADDR": f"127.0.0.1:{port}", "METRICS_ADDR": f"127.0.0.1:{metrics}",
                        "SECRETS_ENCRYPTION_KEY": "A" * 43 + "="})
                    running.append(c)
                    status, body = http("GET", f"http://127.0.0.1:{port}/")
                    expect(status == 200 and "<html" in body.lower(), f"apiserver: GET / gave {status}, not the UI", c)
                    status, _ = http("GET", f"http://127.0.0.1:{port}/health")
                    expect(status == 200, f"apiserver: GET /health gave {status}", c)
                    expect(c.uid_gid() == config["config"]["User"], f"apiserver runs as {c.uid_gid()}", c)
                    expect(c.stop() == 0, "apiserver: exit code after SIGTERM is not 0", c)
                if n == "hello-web":
                    port = free_port()
                    c = Container(root, config, env={"PORT": str(port), "GREETING": "hi from a chroot",
                                                     "SHOW_ENV": "CHECK_SECRET", "CHECK_SECRET": "s3cret"})
                    running.append(c)
                    status, body = http("GET", f"http://127.0.0.1:{port}/")
                    expect(status == 200 and "hi from a chroot" in body and "CHECK_SECRET=s3cret" in body,
                           f"hello-web: GET / gave {status} {body!r}", c)
                    expect(http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200, "hello-web: /healthz", c)
                    expect(c.uid_gid() == config["config"]["User"], f"hello-web runs as {c.uid_gid()}", c)
                    expect(c.stop() == 0, "hello-web: exit code after SIGTERM is not 0", c)
                if n == "guestbook":
                    if "redis" not in roots:
                        raise Failure("the guestbook check needs the redis image too (--only guestbook,redis)")
                    rport, port = free_port(), free_port()
                    r = Container(roots["redis"][0], roots["redis"][1], ["--port", str(rport), "--requirepass", "pw"])
                    running.append(r)
                    c = Container(root, config, env={"PORT": str(port), "REDIS_ADDR": f"127.0.0.1:{rport}",
                                                     "REDIS_PASSWORD": "pw", "TITLE": "Check"})
                    running.append(c)
                    expect(http("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200, "guestbook: /readyz", c)
                    status, _ = http("POST", f"http://127.0.0.1:{port}/entries", b"written in a chroot")
                    expect(status == 201, f"guestbook: POST /entries gave {status}", c)
                    status, body = http("GET", f"http://127.0.0.1:{port}/entries")
                    expect(status == 200 and "written in a chroot" in body, f"guestbook: GET /entries: {body}", c)
                    expect(c.uid_gid() == config["config"]["User"], f"guestbook runs as {c.uid_gid()}", c)
                    expect(r.uid_gid() == roots["redis"][1]["config"]["User"], f"redis runs as {r.uid_gid()}", r)
                    expect(c.stop() == 0, "guestbook: exit code after SIGTERM is not 0", c)
                    expect(r.stop() == 0, "redis: exit code after SIGTERM is not 0", r)
                if n == "redis" and "guestbook" not in names:
                    r = Container(root, config, ["--port", str(free_port())])
                    running.append(r)
                    time.sleep(1)
                    expect(r.proc.poll() is None, "redis exited at start", r)
                    expect(r.stop() == 0, "redis: exit code after SIGTERM is not 0", r)
                if n == "pause":
                    c = Container(root, config)
                    running.append(c)
                    time.sleep(0.5)
                    expect(c.proc.poll() is None, "pause exited at start", c)
                    expect(c.uid_gid() == config["config"]["User"], f"pause runs as {c.uid_gid()}", c)
                    expect(c.stop() == 0, "pause: exit code after SIGTERM is not 0", c)
                say(f"{n}: runs from its rootfs as {config['config']['User']} ({time.monotonic() - started:.1f}s)")
        finally:
            for c in running:
                if c.proc.poll() is None:
                    pid = c.app_pid()
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)  # PID 1: its namespace goes with it
                    c.proc.kill()
                    c.proc.wait()


# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    # `hack/image --check-reproducible` is `hack/image check-reproducible` (and so on).
    if argv and argv[0].startswith("--check-"):
        argv = [argv[0][2:], *argv[1:]]
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["build", *argv]
    p = argparse.ArgumentParser(prog=PROG, description="Builds OCI images without a container engine "
                                "(docs/images.md).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, out=True):
        sp.add_argument("--only", help="comma-separated image names (default: all: " + ", ".join(IMAGES) + ")")
        sp.add_argument("--registry", help=f"registry and namespace of the references (default {DEFAULT_REGISTRY}, "
                        "or IMAGE_REGISTRY)")
        sp.add_argument("--tag", help="tag (default: the workspace version, or IMAGE_TAG)")
        if out:
            sp.add_argument("--out", default=str(ROOT / "target/images"), help="output directory (default target/images)")

    b = sub.add_parser("build", help="build the binaries and assemble the images (the default)")
    common(b)
    b.add_argument("--skip-build", action="store_true", help="use the binaries already in CARGO_TARGET_DIR")
    b.add_argument("--profile", default="release", help="cargo profile (default release; `dev` reuses the "
                   "debug build of hack/test: bigger images, no release build)")
    b.add_argument("--bin-dir", help="take the binaries from this directory (implies --skip-build)")
    b.set_defaults(fn=cmd_build)

    w = sub.add_parser("binary", help="wrap another binary (e.g. CoreDNS, Traefik) in an image on the same base")
    w.add_argument("--binary", required=True, help="the program")
    w.add_argument("--ref", required=True, help="its reference, e.g. localhost/k8s-scheduler-node/coredns:v1.14.7")
    w.add_argument("--name", help="file names under --out (default: the reference's last path part)")
    w.add_argument("--path", help="where the image holds it (default /usr/local/bin/<file name>)")
    w.add_argument("--arg", action="append", default=[], help="an argument the entrypoint always gets (repeatable)")
    w.add_argument("--user", default=f"{NONROOT}:{NONROOT}", help=f"uid:gid (default {NONROOT}:{NONROOT})")
    w.add_argument("--port", action="append", default=[], help="an exposed port, e.g. 53/udp (repeatable)")
    w.add_argument("--description")
    w.add_argument("--out", default=str(ROOT / "target/images"))
    w.set_defaults(fn=cmd_binary)

    r = sub.add_parser("check-reproducible", help="assemble every image twice and compare the digests")
    common(r, out=False)
    r.add_argument("--skip-build", action="store_true", help="use the binaries already built")
    r.add_argument("--profile", default="release", help="cargo profile (default release)")
    r.add_argument("--bin-dir", help="take the binaries from this directory, e.g. a debug build's: the "
                   "check is about the assembly, any binaries do")
    r.set_defaults(fn=cmd_check_reproducible)

    d = sub.add_parser("check-dockerfiles", help="compare docker/Dockerfile with what hack/image writes")
    d.add_argument("--dockerfile", default=str(ROOT / "docker/Dockerfile"))
    d.add_argument("--out", default=str(ROOT / "target/images"), help="built images to compare (default "
                   "target/images; images not built there are compared as hack/image would write them)")
    d.set_defaults(fn=cmd_check_dockerfiles)

    c = sub.add_parser("check-rootfs", help="run every image's entrypoint from its layers (root)")
    common(c)
    c.set_defaults(fn=cmd_check_rootfs)

    u = sub.add_parser("unpack", help="apply an image's layers to a directory")
    u.add_argument("name")
    u.add_argument("dest")
    u.add_argument("--out", default=str(ROOT / "target/images"))
    u.set_defaults(fn=cmd_unpack)

    fs = sub.add_parser("rootfs", help="write an image's file system into a directory (docker/Dockerfile)")
    fs.add_argument("name")
    fs.add_argument("--dest", required=True)
    fs.add_argument("--bin-dir", required=True)
    fs.set_defaults(fn=cmd_rootfs)

    args = p.parse_args(argv)
    try:
        args.fn(args)
    except Failure as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
