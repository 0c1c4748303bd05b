"""Long natural texts that every machine already has, for perplexity and for the needle
documents of `tune`: the King James Bible if `apt install bible-kjv` was done, else
Debian's license texts, else the license files of the installed Python packages (so
macOS and Windows have one too)."""

from __future__ import annotations

import glob
import importlib.metadata
import os
import shutil
import subprocess
from typing import Optional, Tuple

LICENSE_TEXTS = "/usr/share/common-licenses/*"
# the King James Bible (public domain) from Debian's bible-kjv-text, printed by bible-kjv's
# `bible` reader (the data file itself is compressed in its own format)
BIBLE_BOOKS = ("Genesis1:1-50:26", "Exodus1:1-40:38")
# enough for a few thousand tokens of text; fewer characters would be a poor document
MIN_CHARS = 20_000


def bible_text() -> Optional[str]:
    if shutil.which("bible") is None:
        return None
    try:
        done = subprocess.run(["bible", "-l1000", *BIBLE_BOOKS], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 and len(done.stdout) > 100_000 else None


def system_license_text() -> Optional[str]:
    files = sorted(f for f in glob.glob(LICENSE_TEXTS) if os.path.isfile(f) and not os.path.islink(f))
    text = "\n\n".join(open(f, encoding="utf-8", errors="replace").read() for f in files)
    return text if len(text) >= MIN_CHARS else None


def package_license_text() -> Optional[str]:
    """The license files of installed distributions, each distinct text once, in a fixed order."""
    seen = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            name = file.name.upper()
            if not (name.startswith("LICEN") or name.startswith("COPYING")):
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            if text and len(text) > 200:
                seen.setdefault(text.strip(), None)
    text = "\n\n".join(sorted(seen))
    return text if len(text) >= MIN_CHARS else None


def default_text() -> Tuple[str, str]:
    """(name, text): the first long text found, in the order of the module docstring."""
    for name, source in (("bible-kjv", bible_text), ("common-licenses", system_license_text),
                         ("package-licenses", package_license_text)):
        text = source()
        if text:
            return name, text
    raise FileNotFoundError("no long text found on this machine; pass a UTF-8 text file (--text FILE)")
