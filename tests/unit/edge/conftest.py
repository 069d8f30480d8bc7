"""Edge tests: make the frame builders in tests/unit/edge/edgefakes.py importable (importlib mode)."""
from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parents[2] / "unit" / "edge")
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
