"""A picture of what the template deploys, drawn from the template itself (never by hand):
one box per resource, in a column per service, and an arrow from each resource to those it
uses: a Ref, an Fn::GetAtt, or a `${Name}` inside Fn::Sub, where a parameter that names a
resource (the bucket's BucketName) stands for that resource, or a literal naming one (the
endpoint's "scones-endpoint" in classifyImage's ENDPOINT_NAME). What a resource's IAM role
allows counts as its own use (serializeImageData reads the bucket through its role). IAM
roles and log groups are left out of the picture (every function and machine has its own),
and so is where a function's code is stored (Code: deploy-time, not what it uses)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import Any

# Column order: what starts things on the left, what they use to the right.
_COLUMNS = ("Events", "SNS", "StepFunctions", "Lambda", "S3", "SageMaker",
            "ApplicationAutoScaling")  # fmt: skip
_HIDDEN = ("AWS::IAM::", "AWS::Logs::", "AWS::SNS::TopicPolicy")
_COLOURS = {"S3": "#3f8624", "Lambda": "#ed7100", "StepFunctions": "#c7365f",
            "SageMaker": "#01a88d", "ApplicationAutoScaling": "#8c4fff", "Events": "#e7157b",
            "SNS": "#e7157b"}  # fmt: skip
_HALF, _PITCH = 1.25, 2.9  # a box's half width and the column pitch (axis units)
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


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _names(text: str, name: str) -> bool:
    """Whether `text` names the resource called `name` (itself, or an ARN/path part)."""
    return text == name or text.endswith(f"/{name}") or f"/{name}/" in text


def uses(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """Logical name -> the logical names of the resources it uses (see the module's rules)."""
    resources: Mapping[str, Any] = template["Resources"]
    parameters = set(template.get("Parameters", {}))
    alias: dict[str, str] = {}  # a parameter naming a resource -> that resource
    literal: dict[str, str] = {}  # a resource's own literal name -> that resource
    for name, res in resources.items():
        for key, value in res.get("Properties", {}).items():
            if not key.endswith("Name"):
                continue
            if isinstance(value, Mapping) and value.get("Ref") in parameters:
                alias[value["Ref"]] = name
            elif isinstance(value, str):
                literal[value] = name

    def direct(name: str) -> set[str]:
        props = {k: v for k, v in resources[name].get("Properties", {}).items() if k != "Code"}
        found = {alias.get(t, t) for t in references(props)}
        found |= {target for text in _strings(props) for own, target in literal.items()
                  if _names(text, own)}  # fmt: skip
        return found & set(resources)

    graph = {}
    for name in resources:
        found = direct(name)
        for role in [t for t in found if resources[t]["Type"] == "AWS::IAM::Role"]:
            found |= direct(role)
        graph[name] = found - {name}
    return graph


def _order_rows(columns: dict[str, list[str]], graph: Mapping[str, set[str]]) -> None:
    """Order each column's boxes so that arrows cross few boxes: a few sweeps of the usual
    barycentre heuristic (a box moves to the mean row of the boxes it is linked to)."""
    linked: dict[str, set[str]] = {n: set() for col in columns.values() for n in col}
    for name, targets in graph.items():
        for target in targets & linked.keys() if name in linked else ():
            linked[name].add(target)
            linked[target].add(name)
    for col in columns.values():
        col.sort()
    for _ in range(4):
        row = {n: i for col in columns.values() for i, n in enumerate(col)}
        for col in columns.values():
            col.sort(key=lambda n: (sum(row[m] for m in linked[n]) / len(linked[n])
                                    if linked[n] else row[n], row[n]))  # fmt: skip


def render_diagram(template: Mapping[str, Any]) -> bytes:
    """PNG bytes of the resource graph."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    resources: Mapping[str, Any] = template["Resources"]
    shown = {n: r for n, r in resources.items() if not str(r["Type"]).startswith(_HIDDEN)}
    graph = uses(template)
    columns: dict[str, list[str]] = {c: [] for c in _COLUMNS}
    for name, res in shown.items():
        service = str(res["Type"]).split("::")[1]
        columns.setdefault(service, []).append(name)
    used = [c for c in columns if columns[c]]
    _order_rows(columns, graph)
    height = max(len(v) for v in columns.values())
    fig, ax = plt.subplots(figsize=(_PITCH * len(used) + 1, 1.1 * height + 1.6), dpi=110)
    ax.set_xlim(-0.2, len(used) * _PITCH + 0.4)
    ax.set_ylim(-height * 1.1 - 0.4, 1.0)
    ax.axis("off")
    where: dict[str, tuple[float, float]] = {}
    for col, service in enumerate(used):
        x = col * _PITCH + _HALF + 0.1
        ax.text(x, 0.55, service, ha="center", va="center", fontsize=11, weight="bold",
                color=_COLOURS.get(service, "#444"))  # fmt: skip
        for row, name in enumerate(columns[service]):
            y = -row * 1.1 - 0.3
            where[name] = (x, y)
            colour = _COLOURS.get(service, "#666")
            ax.add_patch(FancyBboxPatch((x - _HALF, y - 0.38), 2 * _HALF, 0.76,
                                        boxstyle="round,pad=0.02", facecolor="white",
                                        edgecolor=colour, linewidth=1.6, zorder=3))  # fmt: skip
            kind = str(shown[name]["Type"]).split("::")[2]
            ax.text(x, y + 0.1, name, ha="center", va="center", fontsize=8, weight="bold", zorder=4)
            ax.text(x, y - 0.17, kind, ha="center", va="center", fontsize=7, color="#555",
                    zorder=4)
    for name in shown:
        for target in sorted(graph[name]):
            if target not in where:
                continue
            (x0, y0), (x1, y1) = where[name], where[target]
            if x0 == x1:  # same column: along the boxes' right edges, clear of the labels
                start, end, rad = (x0 + _HALF, y0), (x1 + _HALF, y1), -0.5 if y1 < y0 else 0.5
            elif abs(x1 - x0) < 1.5 * _PITCH:  # the next column: side to side
                side = _HALF if x1 > x0 else -_HALF
                start, end, rad = (x0 + side, y0), (x1 - side, y1), 0.08
            else:  # further: from bottom edge to bottom edge, bowed into the gap below the
                # rows, so that it passes between the boxes of the columns on the way
                side = 0.6 * _HALF if x1 > x0 else -0.6 * _HALF
                start, end = (x0 + side, y0 - 0.4), (x1 - side, y1 - 0.42)
                distance = ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5
                rad = (0.5 if x1 > x0 else -0.5) / distance  # the bow's depth: 0.25 units
            ax.annotate("", xy=end, xytext=start,
                        arrowprops={"arrowstyle": "->", "color": "#999", "lw": 0.9,
                                    "connectionstyle": f"arc3,rad={rad}"}, zorder=2)  # fmt: skip
    ax.set_title("sconeflow on AWS: the resources of the generated template (arrow: uses)",
                 fontsize=11, loc="left")  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
