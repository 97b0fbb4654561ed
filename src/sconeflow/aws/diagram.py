"""A picture of what the template deploys, drawn from the template itself (never by hand):
one box per resource, in a column per service, and an arrow from each resource to those it
uses: a Ref, an Fn::GetAtt, or a `${Name}` inside Fn::Sub, where a parameter that names a
resource (the bucket's BucketName) stands for that resource. IAM roles and log groups are
left out of the picture (every function and machine has its own), as are policies."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import Any

# Column order: data in, functions, orchestration, model, alerts and schedules.
# Column order: what starts things on the left, what they use to the right.
_COLUMNS = ("Events", "SNS", "StepFunctions", "Lambda", "S3", "SageMaker",
            "ApplicationAutoScaling")  # fmt: skip
_HIDDEN = ("AWS::IAM::", "AWS::Logs::", "AWS::SNS::TopicPolicy")
_COLOURS = {"S3": "#3f8624", "Lambda": "#ed7100", "StepFunctions": "#c7365f",
            "SageMaker": "#01a88d", "ApplicationAutoScaling": "#8c4fff", "Events": "#e7157b",
            "SNS": "#e7157b"}  # fmt: skip
_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}")


def references(value: Any) -> Iterator[str]:
    """Logical names `value` refers to."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            elif key == "Fn::GetAtt" and isinstance(inner, list) and inner:
                yield str(inner[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                if isinstance(text, str):
                    yield from _SUB_NAME.findall(text)
                if isinstance(inner, list) and len(inner) > 1:
                    yield from references(inner[1])
            else:
                yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)


def render_diagram(template: Mapping[str, Any]) -> bytes:
    """PNG bytes of the resource graph."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    resources: Mapping[str, Any] = template["Resources"]
    shown = {n: r for n, r in resources.items() if not str(r["Type"]).startswith(_HIDDEN)}
    parameters = set(template.get("Parameters", {}))
    # A parameter that names a resource (DataBucket's BucketName: Ref BucketName) stands for it.
    alias = {
        value["Ref"]: name
        for name, res in shown.items()
        for key, value in res.get("Properties", {}).items()
        if key.endswith("Name") and isinstance(value, Mapping) and value.get("Ref") in parameters
    }
    columns: dict[str, list[str]] = {c: [] for c in _COLUMNS}
    for name, res in shown.items():
        service = str(res["Type"]).split("::")[1]
        columns.setdefault(service, []).append(name)
    used = [c for c in columns if columns[c]]
    height = max(len(v) for v in columns.values())
    fig, ax = plt.subplots(figsize=(2.6 * len(used) + 1, 1.1 * height + 1.6), dpi=110)
    ax.set_xlim(-0.2, len(used) * 2.6 + 0.4)
    ax.set_ylim(-height * 1.1 - 0.4, 1.0)
    ax.axis("off")
    where: dict[str, tuple[float, float]] = {}
    for col, service in enumerate(used):
        x = col * 2.6 + 1.2
        ax.text(x, 0.55, service, ha="center", va="center", fontsize=11, weight="bold",
                color=_COLOURS.get(service, "#444"))  # fmt: skip
        for row, name in enumerate(sorted(columns[service])):
            y = -row * 1.1 - 0.3
            where[name] = (x, y)
            colour = _COLOURS.get(service, "#666")
            ax.add_patch(FancyBboxPatch((x - 1.1, y - 0.38), 2.2, 0.76,
                                        boxstyle="round,pad=0.02", facecolor="white",
                                        edgecolor=colour, linewidth=1.6))  # fmt: skip
            kind = str(shown[name]["Type"]).split("::")[2]
            ax.text(x, y + 0.1, name, ha="center", va="center", fontsize=8, weight="bold")
            ax.text(x, y - 0.17, kind, ha="center", va="center", fontsize=7, color="#555")
    for name, res in shown.items():
        used_by = {alias.get(t, t) for t in references(res.get("Properties", {}))}
        for target in used_by:
            if target not in where or target == name:
                continue
            (x0, y0), (x1, y1) = where[name], where[target]
            if x0 == x1:  # same column: along the boxes' right edges, clear of the labels
                start, end, rad = (x0 + 1.1, y0), (x1 + 1.1, y1), -0.5 if y1 < y0 else 0.5
            else:
                side = 1.1 if x1 > x0 else -1.1
                start, end, rad = (x0 + side, y0), (x1 - side, y1), 0.08
            ax.annotate("", xy=end, xytext=start,
                        arrowprops={"arrowstyle": "->", "color": "#999", "lw": 0.9,
                                    "connectionstyle": f"arc3,rad={rad}"})  # fmt: skip
    ax.set_title("sconeflow on AWS: the resources of the generated template (arrow: uses)",
                 fontsize=11, loc="left")  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
