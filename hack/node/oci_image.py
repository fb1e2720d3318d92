#!/usr/bin/env python3
"""Writes a one-layer OCI image archive holding a single static binary.

The node's pause and CoreDNS images are built here, without a registry or an
image builder: an OCI image is a gzip'd tar per layer plus three JSON
documents (config, manifest, index). `ctr images import` reads the archive and
names the image from the index's `io.containerd.image.name` annotation.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def blob(out: tarfile.TarFile, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def layer(path: str) -> tuple[bytes, str]:
    """The layer (gzip'd) and its diff ID (the digest of the plain tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(path, arcname=os.path.basename(path))
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        info.mtime = 0
        with open(path, "rb") as f:
            tar.addfile(info, f)
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ref", required=True, help="image reference, e.g. registry.k8s.io/pause:3.10.2")
    p.add_argument("--file", required=True, help="the static binary, placed at /")
    p.add_argument("--entrypoint", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    gz, diff_id = layer(a.file)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": a.user, "Entrypoint": [a.entrypoint]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(a.out, mode="w") as out:
        layer_desc = blob(out, gz, "application/vnd.oci.image.layer.v1.tar+gzip")
        config_desc = blob(out, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = blob(out, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["annotations"] = {
            "io.containerd.image.name": a.ref,
            "org.opencontainers.image.ref.name": a.ref.rsplit(":", 1)[1],
        }
        manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [manifest_desc]}
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
