"""Export a CLIP image encoder to ONNX (fp32 + int8) with metadata: ``python models/export_clip_onnx.py --help``.

The same command is ``facewire models export-clip``; needs ``pip install 'facewire[export]'``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facewire_console.models_cli import export_clip_command

if __name__ == "__main__":
    export_clip_command()
