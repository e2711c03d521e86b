"""gen.exporters: torch run folder -> ONNX bundle (graphs + manifest), checked for parity."""

from gen.runtime.errors import ExportError

from .onnx_export import export_run

__all__ = ["export_run", "ExportError"]
