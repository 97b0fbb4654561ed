"""The ASL engine is a pure core: importing it loads nothing of sconeflow but its errors, and
nothing heavy that a machine does not use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_engine_imports_only_errors() -> None:
    code = (
        "import json, sys; import sconeflow.workflow; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sconeflow'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    outside = [m for m in loaded if not m.startswith("sconeflow.workflow")]
    assert outside == ["sconeflow", "sconeflow.errors"], outside


# Runs in a fresh interpreter: which heavy libraries a JSONPath machine and then a JSONata
# machine load. The JSONPath machine uses paths, an intrinsic, a Choice and a Lambda Task.
_LAZY_PROBE = """
import json, sys
from sconeflow.workflow import parse_definition, run_execution

def loaded():
    return {m: m in sys.modules for m in ("jsonata", "regex", "statelint")}

report = {"import": loaded()}
fn = "arn:aws:lambda:us-east-1:123456789012:function:double"
handlers = {"double": lambda event, context: {"n": event["n"] * 2}}
jsonpath = parse_definition({
    "StartAt": "Shape",
    "States": {
        "Shape": {"Type": "Pass", "Next": "Big?",
                  "Parameters": {"n.$": "$.n", "tag.$": "States.Format('n={}', $.n)"}},
        "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1,
                 "Next": "Double"}], "Default": "Double"},
        "Double": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                   "Parameters": {"FunctionName": fn, "Payload.$": "$"},
                   "ResultSelector": {"n.$": "$.Payload.n"}, "End": True},
    },
})
result = run_execution(jsonpath, {"n": 2}, handlers)
report["jsonpath"] = {"status": result.status, "output": result.output, **loaded()}
jsonata = parse_definition({
    "QueryLanguage": "JSONata",
    "StartAt": "Double",
    "States": {
        "Double": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                   "Arguments": {"FunctionName": fn, "Payload": {"n": "{% $states.input.n + 1 %}"}},
                   "Output": "{% {'n': $states.result.Payload.n, 'm': $match('ab', /b/).match} %}",
                   "End": True},
    },
})
result = run_execution(jsonata, {"n": 2}, handlers)
report["jsonata"] = {"status": result.status, "output": result.output, **loaded()}
print(json.dumps(report))
"""


def test_jsonata_and_regex_load_only_for_jsonata_expressions() -> None:
    """`import sconeflow.workflow` loads neither jsonata-python, `regex` nor statelint; a
    JSONPath machine never loads jsonata-python (statelint, run on every definition, brings
    `regex` itself); the first JSONata expression loads both and still evaluates."""
    src = str(Path(__file__).resolve().parents[2] / "src")  # this checkout, not an install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _LAZY_PROBE], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["import"] == {"jsonata": False, "regex": False, "statelint": False}
    assert report["jsonpath"] == {
        "status": "SUCCEEDED",
        "output": {"n": 4},
        "jsonata": False,
        "regex": True,  # statelint's own dependency, loaded when the definition is linted
        "statelint": True,
    }
    assert report["jsonata"] == {
        "status": "SUCCEEDED",
        "output": {"n": 6, "m": "b"},
        "jsonata": True,
        "regex": True,
        "statelint": True,
    }
