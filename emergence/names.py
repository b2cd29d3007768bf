"""Name lookups that fail with "did you mean ...?" instead of a bare KeyError, and safe file
names for names that come from data."""

import difflib
import hashlib
import re
from pathlib import Path


class UnknownName(KeyError):
    """A name that is not registered; the message lists close matches."""

    def __str__(self):
        return self.args[0]


def lookup(kind: str, name: str, known: dict):
    """Return ``known[name]`` or raise UnknownName naming the closest known names."""
    if name in known:
        return known[name]
    raise UnknownName(unknown_message(kind, name, known))


def unknown_message(kind: str, name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(sorted(known)[:12]) + (" ..." if len(known) > 12 else "")
    return f"Unknown {kind} {name!r}.{hint} Known: {listing or '(none)'}"


def read_toml(path, error: type[Exception] = ValueError) -> tuple[dict, str]:
    """(data, text) of a TOML file; malformed TOML raises ``error`` naming the file, and the
    text is returned so that later errors can name a key's line (``at_line``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
        import tomli as tomllib

    text = Path(path).read_text()
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: malformed TOML: {e}") from None


def at_line(text: str, key: str) -> str:
    """" (line N)" for the first line of a TOML text that assigns ``key``, else ""."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip().split("=", 1)[0].strip().strip('"') == key:
            return f" (line {i})"
    return ""


def file_name(name: str) -> str:
    """One safe path component for a name that comes from data (a checkpoint, a task): never a
    separator, a leading dot or ``..``, so it cannot point outside the folder it is joined to.
    A name that had to change gets a short hash of the original, so two names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9@._+=-]+", "_", str(name)).lstrip(".") or "_"
    if safe == name and len(name) <= 100:
        return safe
    return f"{safe[:80]}-{hashlib.sha1(str(name).encode()).hexdigest()[:8]}"
