"""Build the deployment zip that runs these same files on AWS Lambda.

The zip holds only what the handlers import: `sconeflow/__init__.py`, `errors.py`,
`config.py`, `store.py` and `functions/*.py`, all standard library plus boto3, which the
Lambda Python runtime provides. Handler strings are listed in HANDLERS.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import sconeflow

HANDLERS = {
    "serializeImageData": "sconeflow.functions.serialize_image_data.lambda_handler",
    "classifyImage": "sconeflow.functions.classify_image.lambda_handler",
    "filterLowConfidence": "sconeflow.functions.filter_low_confidence.lambda_handler",
    "assignOrders": "sconeflow.functions.assign_orders.lambda_handler",
}
_PACKAGE_FILES = ("__init__.py", "errors.py", "config.py", "store.py", "py.typed")


def build_lambda_zip() -> bytes:
    """A zip for `aws lambda create-function --zip-file` (one zip for every function)."""
    root = Path(sconeflow.__file__).parent
    files = [root / name for name in _PACKAGE_FILES]
    files += sorted((root / "functions").glob("*.py"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            arcname = "sconeflow/" + path.relative_to(root).as_posix()
            # A fixed timestamp makes the zip reproducible, so its CodeSha256 only changes
            # when the code does.
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()
