"""Export: split a model and write the edge's ORT training artifacts and the cloud's tail.

The names below load on first use (PEP 562): `hostctl --help` imports `host.export.commands`,
and validation's child process `python -m host.export.ort_probe` runs this file too; neither
must pull in torch and onnx with the exporter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.export.bundle_writer import (
        BundleExistsError,
        ExportError,
        ExportOptions,
        default_out_dir,
        export_bundle,
    )

__all__ = ["BundleExistsError", "ExportError", "ExportOptions", "default_out_dir", "export_bundle"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("host.export.bundle_writer"), name)
