"""Shipped components: importing this package registers every one of them.

Each group is a sub-package and each file registers one component; files are discovered, so a
new component is one file plus its `@register` line.
"""

import importlib
import pkgutil
from pathlib import Path

for _group in sorted(
    p.name for p in Path(__file__).parent.iterdir() if p.is_dir() and (p / "__init__.py").exists()
):
    _pkg = importlib.import_module(f"{__name__}.{_group}")
    for _info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{_group}.{_info.name}")
