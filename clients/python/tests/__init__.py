"""The client's tests: `python3 -m unittest` in clients/python runs them against the service built in dist/. The
package is imported from src/ unless it is installed."""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
