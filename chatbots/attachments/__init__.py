"""Files people share: what is read, how (images, PDFs, text), within which limits, and what the model is told."""

from .files import FileLimits, FilePart, Kind, ReadFiles, read_files
from .images import image_tokens

__all__ = ["FileLimits", "FilePart", "Kind", "ReadFiles", "image_tokens", "read_files"]
