"""What a checkpoint is beyond its name: the identity recorded with its cells.

A checkpoint's name keys its cells, but two folders may share a name and hold different weights.
Its identity is computed before evaluation, cheaply (no model load, no download): the family's
name, and for a local folder a fingerprint of its weight, config and tokenizer files (a content
hash of small files, of the header, size, mtime and three sampled blocks of large ones); for a
hub checkpoint the repo, the revision and the commit sha the local Hugging Face cache resolves
it to, when it knows. Two identities differ only where both sides know a value: what was not
recorded (an old run directory, an uncached hub revision, a folder since deleted) never differs.
"""

import hashlib
import json
import re
from pathlib import Path

# The files whose change changes the numbers; a README or a training log does not.
IDENTITY_FILES = re.compile(r".*\.(safetensors|bin|pt|pth|json|model)|merges\.txt|vocab\.txt")
FULL_HASH_LIMIT = 256 * 2**20   # hash whole files up to this size (about 0.2 s); sample larger ones
SAMPLE = 2**20                  # bytes read at the start, middle and end of a large file


def checkpoint_identity(checkpoint, previous: dict | None = None) -> dict:
    """The identity of ``checkpoint`` as a JSON-able dict. ``previous`` (the stored identity)
    lets files whose path, size and mtime are unchanged keep their hash without reading them."""
    identity = {"family": checkpoint.family}
    path = Path(checkpoint.repo).expanduser()
    if path.is_dir():
        identity.update(kind="local", path=str(path.resolve()), **_local(path.resolve(), previous or {}))
    elif path.exists() or checkpoint.repo.startswith((".", "/", "~")):
        identity.update(kind="local", path=str(path), weights=None)  # missing: loading will say so
    else:
        identity.update(kind="hub", repo=checkpoint.repo, revision=checkpoint.revision,
                        sha=cached_commit(checkpoint.repo, checkpoint.revision))
    return identity


def differences(stored: dict, current: dict) -> list[str]:
    """The fields in which two identities disagree; empty when they may be the same checkpoint."""
    def known(key):
        return stored.get(key) is not None and current.get(key) is not None

    out = ["family"] if known("family") and stored["family"] != current["family"] else []
    kinds = stored.get("kind"), current.get("kind")
    if None in kinds:
        return out
    if kinds[0] != kinds[1]:
        # A local folder that is gone (now or then) cannot be compared with anything.
        gone = any(i["kind"] == "local" and i.get("weights") is None for i in (stored, current))
        return out if gone else out + ["kind"]
    if kinds[0] == "hub":
        out += [k for k in ("repo", "revision") if stored.get(k) != current.get(k)]  # None is main
        return out + (["sha"] if known("sha") and stored["sha"] != current["sha"] else [])
    return out + (["weights"] if known("weights") and stored["weights"] != current["weights"] else [])


def merge(stored: dict | None, current: dict) -> dict:
    """The identity to keep: the current one, with what only the stored one knew (a hub sha
    resolved earlier, weights of a folder since deleted) carried over."""
    if not stored:
        return current
    return {**current, **{k: v for k, v in stored.items() if current.get(k) is None}}


def describe(identity: dict) -> str:
    """One line for messages: family, where the weights are, and their fingerprint."""
    if identity.get("kind") == "hub":
        where = f"hub {identity.get('repo')}@{identity.get('revision') or 'main'}"
        where += f" commit {identity['sha'][:12]}" if identity.get("sha") else " (commit not known)"
    else:
        weights = identity.get("weights")
        where = f"folder {identity.get('path')}" + (f" weights {weights[:12]}" if weights else " (missing)")
    return f"family {identity.get('family')!r}, {where}"


def cached_commit(repo: str, revision: str | None) -> str | None:
    """The commit sha the local Hugging Face cache resolves ``repo@revision`` to; never a download."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:  # a repo id the hub library rejects: loading will name the problem
        return None
    if isinstance(found, str):  # .../snapshots/<sha>/config.json
        return Path(found).parent.name
    return None


def _local(folder: Path, previous: dict) -> dict:
    known = previous.get("files", {}) if previous.get("path") == str(folder) else {}
    files = {}
    for p in sorted(folder.iterdir()):
        if not (IDENTITY_FILES.fullmatch(p.name) and p.is_file()):
            continue
        st = p.stat()
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        old = known.get(p.name, {})
        same = all(old.get(k) == v for k, v in entry.items())
        try:
            entry["sha256"] = old["sha256"] if same and "sha256" in old else _file_hash(p, st)
        except OSError as e:  # unreadable: loading will fail and say why; nothing to compare
            entry["sha256"] = f"unreadable: {e.strerror}"
        files[p.name] = entry
    weights = hashlib.sha256(json.dumps({n: e["sha256"] for n, e in files.items()}, sort_keys=True)
                             .encode()).hexdigest()
    return {"weights": weights, "files": files}


def _file_hash(path: Path, st) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
            return h.hexdigest()
        # Large: size and mtime, and three blocks (the first holds a safetensors file's header).
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        for offset in (0, st.st_size // 2, st.st_size - SAMPLE):
            f.seek(offset)
            h.update(f.read(SAMPLE))
        return "sampled:" + h.hexdigest()
