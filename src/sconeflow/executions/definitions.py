"""State machine definitions as the execution service loads them: packaged or from a file,
with `${...}` placeholders for ARNs filled in, as AWS SAM/CDK templates do
(`${SerializeImageDataArn}` becomes the local ARN of function `serializeImageData`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sconeflow.errors import WorkflowError

REGION = "us-east-1"
ACCOUNT = "123456789012"
# Definitions shipped in sconeflow/definitions/.
PACKAGED = ("stepfunction", "fanout", "stepfunction_jsonata", "fanout_distributed")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Definition:
    """An ASL definition with its placeholders filled, ready for parse_definition."""

    name: str  # the state machine's name (in ARNs)
    text: str
    source: str  # where it came from, for messages


def load_definition(
    source: str | Path | None = None, *, name: str | None = None,
    region: str = REGION, account: str = ACCOUNT,
) -> Definition:  # fmt: skip
    """A packaged definition by name ('stepfunction', the default, 'fanout' or
    'stepfunction_jsonata', 'fanout_distributed') or a file,
    with `${<Function>Arn}` placeholders replaced by local Lambda ARNs."""
    source = source or "stepfunction"
    if str(source) in PACKAGED:
        text = packaged_text(str(source))
        stem, where = str(source), f"packaged definition {source!r}"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise WorkflowError(
                f"cannot read definition {str(path)!r}: {err}; pass a file or one of "
                f"{', '.join(PACKAGED)}"
            ) from err
        except UnicodeDecodeError as err:
            raise WorkflowError(
                f"definition {str(path)!r} is not UTF-8 text (byte {err.start}: "
                f"{err.reason}); save the ASL JSON as UTF-8"
            ) from err
        stem, where = path.stem, str(path)
    machine_name = name or re.sub(r"[^0-9A-Za-z_-]+", "-", stem)[:80]
    return Definition(machine_name, substitute(text, function_arns(region, account), where), where)


def packaged_text(name: str) -> str:
    """A packaged definition's text as shipped, `${...Arn}` placeholders and all (what a
    CloudFormation template's DefinitionSubstitutions fill in)."""
    if name not in PACKAGED:
        raise WorkflowError(f"no packaged definition {name!r}; use one of {', '.join(PACKAGED)}")
    return resources.files("sconeflow.definitions").joinpath(f"{name}.json").read_text()


def function_arns(region: str = REGION, account: str = ACCOUNT) -> dict[str, str]:
    """`SerializeImageDataArn` -> `arn:aws:lambda:...:function:serializeImageData`, etc."""
    from sconeflow.functions import FUNCTION_MODULES

    return {
        f"{fn[0].upper()}{fn[1:]}Arn": f"arn:aws:lambda:{region}:{account}:function:{fn}"
        for fn in FUNCTION_MODULES
    }


def substitute(text: str, values: Mapping[str, str], where: str = "definition") -> str:
    """Replace every `${Name}`; WorkflowError lists any name without a value."""
    unknown = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if unknown:
        raise WorkflowError(
            f"{where}: no value for placeholder(s) {', '.join('${' + u + '}' for u in unknown)};"
            f" known: {', '.join('${' + k + '}' for k in sorted(values))}"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
