"""Export: split a model and write the edge's ORT training artifacts and the cloud's tail."""

from host.export.bundle_writer import ExportOptions, default_out_dir, export_bundle

__all__ = ["ExportOptions", "default_out_dir", "export_bundle"]
