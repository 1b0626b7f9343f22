"""Optional parts of the package and the extras that install them.

A module that needs an optional dependency imports it at its top through a guard that turns
the ``ImportError`` into one naming the extra to install (:func:`missing`), so the fix is in
the message: ``pip install "vit1d[viz]"``. The extras are declared in ``pyproject.toml``:

* ``viz``: matplotlib, seaborn and ipywidgets, for the modules of :mod:`vit1d.viz`
  (``vit1d analyses --figures``, the book's figures and explorers);
* ``corpus``: music21, pretty_midi (scores, ``TimGM6mb.sf2``) and matplotlib (the label
  figure) for :mod:`vit1d.corpus`, which renders with its NumPy renderer unless the faster
  TinySoundFont is installed apart (see the README's install section);
* ``datasets``: mirdata, for the real-dataset adapters of :mod:`vit1d.datasets`;
* ``book``: everything above the book needs (``viz`` included), and ``dev`` the test tools.
"""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: ``pip install "vit1d[extra]"``."""
    return f'pip install "vit1d[{extra}]"'


def missing(module: str, extra: str, exc: ImportError) -> ImportError:
    """An ``ImportError`` for ``module`` whose dependency ``exc.name`` is absent, naming the
    extra that installs it (raise it ``from exc``)."""
    what = exc.name or str(exc)
    err = ImportError(f"{module} needs {what}, which is not installed: {install_hint(extra)}")
    err.name = exc.name
    return err
