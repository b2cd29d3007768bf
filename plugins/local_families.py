"""Built-in family resolver for local checkpoints: a folder of checkpoint folders, or a TOML list.

Folder layout: ``ROOT/<model>@step<N>/`` or ``ROOT/<model>/step<N>/`` (each with config.json),
or ROOT itself is one checkpoint; symlinks are followed, and a folder reached by several paths
(a link loop) is one checkpoint. TOML layout (paths relative to the file)::

    name = "my-ladder"
    [[checkpoint]]
    path = "runs/150m/step2000"    # or repo = "org/model" with revision = "step2000"
    model = "150m"
    step = 2000
    tokens = 4.2e9                 # optional: params, params_nonembed, flops, size too
"""

import math
import re
from pathlib import Path

from emergence.families import Checkpoint, Family, parse_size
from emergence.hookspecs import hookimpl
from emergence.names import at_line, read_toml, unknown_message

STEP = re.compile(r"(?:^|[@_/-])(?:step|ckpt|iter)[-_]?(\d+)$")
TOML_KEYS = {"path", "repo", "revision", "model", "size", "step", "tokens", "params",
             "params_nonembed", "flops", "name"}
WHOLE = {"step", "params", "params_nonembed"}   # counts: whole numbers >= 0
AMOUNT = {"tokens", "flops"}                    # may be written 4.2e9


class FamilyFileError(ValueError):
    pass


@hookimpl
def resolve_family(spec):
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".toml":
        return family_from_toml(path)
    if path.is_dir():
        return family_from_folder(path)
    return None


def family_from_folder(root: Path) -> Family:
    root = root.resolve()
    if (root / "config.json").exists():
        folders = [root]
    else:
        folders = _once(sorted(p.parent for p in root.glob("*/config.json")) +
                        sorted(p.parent for p in root.glob("*/*/config.json")))
    if not folders:
        raise FamilyFileError(f"{root}: no checkpoint folders (a folder with config.json) found "
                              "directly inside or one level down")
    checkpoints = []
    for folder in folders:
        rel = folder.relative_to(root).as_posix() if folder != root else folder.name
        model, step = _split_step(rel)
        checkpoints.append(Checkpoint(family=root.name, name=rel.replace("/", "@") if "@" not in rel else rel,
                                      repo=str(folder), model=model, size=_size_label(model), step=step))
    checkpoints.sort(key=lambda ck: (ck.model, ck.step if ck.step is not None else -1))
    return Family(name=root.name, checkpoints=tuple(checkpoints), description=f"local checkpoints in {root}")


def family_from_toml(path: Path) -> Family:
    data, text = read_toml(path, FamilyFileError)
    unknown = set(data) - {"name", "description", "checkpoint"}
    if unknown:
        key = sorted(unknown)[0]
        raise FamilyFileError(f"{path}{at_line(text, key)}: "
                              f"{unknown_message('key', key, ['name', 'description', 'checkpoint'])}")
    for key in ("name", "description"):
        if not isinstance(data.get(key, ""), str):
            raise FamilyFileError(f"{path}{at_line(text, key)}: {key!r} must be a string, got {data[key]!r}")
    name = data.get("name") or path.stem
    entries = data.get("checkpoint", [])
    if isinstance(entries, dict):
        raise FamilyFileError(f"{path}{_header_line(text, 1)}: [checkpoint] is one table; list checkpoints as "
                              "an array of tables, a [[checkpoint]] header before each")
    if not entries:
        raise FamilyFileError(f"{path}: no [[checkpoint]] entries")
    checkpoints = []
    for k, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise FamilyFileError(f"{path}{at_line(text, 'checkpoint')}: checkpoint #{k} must be a table, "
                                  f"got {entry!r}")
        bad = set(entry) - TOML_KEYS
        if bad:
            key = sorted(bad)[0]
            raise FamilyFileError(f"{path}{_entry_line(text, k, key)}: checkpoint #{k}: "
                                  f"{unknown_message('key', key, TOML_KEYS)}")
        for key, value in entry.items():
            expected = _type_error(key, value)
            if expected:
                raise FamilyFileError(f"{path}{_entry_line(text, k, key)}: checkpoint #{k}: {key!r} must be "
                                      f"{expected}, got {value!r}")
        entry = {**entry, **{key: int(entry[key]) for key in WHOLE & set(entry)}}  # params = 1.4e9 is whole
        if ("path" in entry) == ("repo" in entry):
            raise FamilyFileError(f"{path}: checkpoint #{k} needs exactly one of 'path' or 'repo'")
        repo = str((path.parent / entry["path"]).resolve()) if "path" in entry else entry["repo"]
        model = entry.get("model") or Path(repo).name
        step = entry.get("step")
        label = entry.get("name") or (f"{model}@step{step}" if step is not None else model)
        checkpoints.append(Checkpoint(
            family=name, name=label, repo=repo, revision=entry.get("revision"), model=model,
            size=entry.get("size") or _size_label(model), step=step, tokens=entry.get("tokens"),
            params=entry.get("params"), params_nonembed=entry.get("params_nonembed"),
            flops=entry.get("flops"),
        ))
    try:
        return Family(name=name, checkpoints=tuple(checkpoints), description=data.get("description", str(path)))
    except ValueError as e:
        raise FamilyFileError(f"{path}: {e}") from None


def _once(folders: list[Path]) -> list[Path]:
    """Each checkpoint folder once, however many symlinks lead to it (a link back up the tree,
    a loop): reached without a link if it can be, else the first way found."""
    kept, seen = [], set()
    for folder in sorted(folders, key=lambda p: p.resolve() != p):  # stable: link-free paths first
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            kept.append(folder)
    return kept


def _split_step(rel: str) -> tuple[str, int | None]:
    m = STEP.search(rel)
    if not m:
        return rel, None
    return rel[: m.start()].rstrip("@/_-") or rel, int(m.group(1))


def _size_label(model: str) -> str:
    for part in re.split(r"[-_/]", model):
        if parse_size(part) is not None:
            return part.lower()
    return model


def _type_error(key: str, value) -> str | None:
    """What ``key`` must be when ``value`` is not that, else None. A quoted number is a string:
    refused, not parsed, so that a typo cannot turn into a number."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if key in WHOLE:
        return None if number and value == int(value) and value >= 0 else "a whole number >= 0 (unquoted)"
    if key in AMOUNT:
        return None if number and value >= 0 else "a number >= 0 (unquoted, e.g. 4.2e9)"
    return None if isinstance(value, str) and value else "a non-empty string"


def _header_line(text: str, k: int) -> str:
    """" (line N)" of the k-th checkpoint table header, else ""."""
    n = _header_number(text, k)
    return f" (line {n})" if n else ""


def _entry_line(text: str, k: int, key: str) -> str:
    """" (line N)" of ``key`` inside the k-th [[checkpoint]] table, else of the first line setting it."""
    lines = text.splitlines()
    for i in range(_header_number(text, k) or 0, len(lines)):
        if lines[i].strip().split("=", 1)[0].strip().strip('"') == key:
            return f" (line {i + 1})"
    return at_line(text, key)


def _header_number(text: str, k: int) -> int | None:
    headers = [i for i, line in enumerate(text.splitlines(), 1)
               if line.strip().replace(" ", "") in ("[[checkpoint]]", "[checkpoint]")]
    return headers[k - 1] if len(headers) >= k else None
