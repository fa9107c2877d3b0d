"""Reading a config or search-space TOML file, bounded before tomllib parses it (tomllib's cost
grows quadratically with the parts of one dotted key and with the number of tables: 20,000 parts
took 25 s). The bounds are far above any real config or space (docs/reliability.md "Threat model").

    doc = read_toml("configs/digits_mlp.toml")     # TomlError (one line naming the file) on any problem

rlp_tune.config.load_toml turns TomlError into a ConfigError (the space loader into a SpaceError).
"""
from __future__ import annotations

import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from .errors import UserError


class TomlError(UserError, ValueError):
    """A TOML file that cannot be read, is past the bounds, or is invalid; one line naming the file."""


MAX_TOML_BYTES = 1 << 20      # 1 MiB
MAX_KEY_PARTS = 16            # parts of one dotted key or table name (a.b.c ...)
MAX_TABLES = 1000             # [table] / [[array]] headers
# MAX_KEY_PARTS "part." in a row (bare or quoted parts); the look-behind starts a match only at a
# part's first character and the possessive quantifiers never backtrack: linear in the file's size
_DOTTED = re.compile(r"""(?<![\w"'-])(?:(?:[A-Za-z0-9_-]++|"[^"\n]*+"|'[^'\n]*+')[ \t]*+\.[ \t]*+){%d}"""
                     % MAX_KEY_PARTS)
_TABLE = re.compile(r"^[ \t]*\[", re.MULTILINE)


def check_toml_size(p: Path, text: str) -> None:
    """TomlError if `text` (the file `p`) is past the bounds above: before it is parsed."""
    m = _DOTTED.search(text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise TomlError(f"{p}: line {line}: a dotted key with more than {MAX_KEY_PARTS} parts")
    n = len(_TABLE.findall(text))
    if n > MAX_TABLES:
        raise TomlError(f"{p}: {n} table headers (at most {MAX_TABLES})")


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; any problem (missing, a folder, a link loop, too large, not UTF-8,
    invalid, nested too deeply) is a one-line TomlError naming the file."""
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise TomlError(f"{p}: config file not found") from None
    except OSError as e:      # a link loop (ELOOP), permissions on a folder above, ...
        raise TomlError(f"{p}: cannot read the config file ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise TomlError(f"{p}: is a folder, not a config file")
    if not stat.S_ISREG(st.st_mode):
        raise TomlError(f"{p}: not a regular file")
    if st.st_size > MAX_TOML_BYTES:
        raise TomlError(f"{p}: {st.st_size} bytes; config and search-space files are at most "
                        f"{MAX_TOML_BYTES} bytes")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_TOML_BYTES + 1)
    except OSError as e:
        raise TomlError(f"{p}: cannot read the config file ({e.strerror or type(e).__name__})") from None
    return parse_toml(data, p)


def parse_toml(data: bytes, where: str | Path) -> dict[str, Any]:
    """TOML bytes (a file's, or an object's in a bucket) as a dict: the one parse of config and
    space files, bounded before parsing; any problem is a one-line TomlError naming `where`."""
    try:
        text = data.decode("utf-8")
        if len(text) > MAX_TOML_BYTES:
            raise TomlError(f"{where}: more than {MAX_TOML_BYTES} bytes")
        check_toml_size(Path(str(where)), text)
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TomlError(f"{where}: invalid TOML: {e}") from None
    except RecursionError:
        raise TomlError(f"{where}: invalid TOML: arrays or tables nested too deeply") from None
    except UnicodeDecodeError as e:
        raise TomlError(f"{where}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
