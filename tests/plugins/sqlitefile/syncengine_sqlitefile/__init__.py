"""An example third-party target kind: ``sqlitefile``, every target table in one SQLite file.

Registered through the ``syncengine.targets`` entry point in this package's pyproject.toml
(:mod:`.factory`), then usable as ``target: {type: sqlitefile, path: out.db}`` with every
command. The layout follows a built-in kind's folder: :mod:`.config` (the model),
:mod:`.factory` (what the registry loads; light), :mod:`.preflight` (``validate``'s checks)
and :mod:`.target` (the client). docs/extending.md walks through it.
"""
