"""gen.exporters: torch run folder -> ONNX bundle (graphs + manifest), checked for parity."""

from .onnx_export import ExportError, export_run

__all__ = ["export_run", "ExportError"]
