"""Export: split a model and write the edge's ORT training artifacts and the cloud's tail.

Names load lazily: `python -m host.export.ort_probe` (validation's child process) imports this
package and must not pay for torch.
"""

from typing import Any

__all__ = ["BundleExistsError", "ExportError", "ExportOptions", "default_out_dir", "export_bundle"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from host.export import bundle_writer

        return getattr(bundle_writer, name)
    raise AttributeError(f"module 'host.export' has no attribute {name!r}")
