"""The ASL engine is a pure core: importing it loads nothing of sconeflow but its errors."""

from __future__ import annotations

import json
import subprocess
import sys


def test_engine_imports_only_errors() -> None:
    code = (
        "import json, sys; import sconeflow.workflow; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sconeflow'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    outside = [m for m in loaded if not m.startswith("sconeflow.workflow")]
    assert outside == ["sconeflow", "sconeflow.errors"], outside
