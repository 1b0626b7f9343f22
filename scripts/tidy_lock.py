"""Tidy what ``pip-compile`` writes into ``requirements.lock`` (run by ``make lock``).

* The ``book`` extra asks for ``vit1d[viz]``, which pip-compile pins as ``vit1d @ file://...``,
  the path of the checkout it ran in: the project itself is installed by ``pip install -e .``
  or from its wheel, never from the lock, so that entry (and its comment) goes.
* A local version label (``torch==2.13.0+cpu``, the CPU wheel of the project's machines) is
  dropped, so that a CUDA build of the same version (``2.13.0+cu128``) also satisfies it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.-]+==[^+\s]+)\+[A-Za-z0-9.]+(\s.*)?$")


def tidy(text: str) -> str:
    """The lock ``text`` without the project's own entry and without local version labels."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith("vit1d @ ") or line.startswith("vit1d=="):
            skipping = True
            continue
        if skipping and line.startswith("    #"):
            continue
        skipping = False
        m = PIN.match(line)
        out.append(m.group(1) + (m.group(2) or "") if m else line)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Rewrite each lock file named in ``argv`` in place."""
    for name in argv:
        path = Path(name)
        path.write_text(tidy(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
