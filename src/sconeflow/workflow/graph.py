"""Pictures of state machines: a definition, or an execution with each state coloured by
what happened to it (succeeded, failed, caught, not reached), as SVG and PNG.

Layout is computed here, top-down in layers, so nothing outside Python is needed (no
Graphviz); matplotlib's Agg and SVG backends draw it. Parallel and Map states are drawn as
boxes holding their branches (side by side) or their item processor, each laid out the same
way, so nesting reads as nesting. Text stays text in the SVG (`svg.fonttype: none`), so the
state names can be searched and checked.

    layout:   _measure (sizes, bottom-up)  ->  _place (positions, top-down)
    outcomes: outcomes_from_history (GetExecutionHistory events -> per-state tallies)
    drawing:  render_graph
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sconeflow.errors import WorkflowError

# Sizes in inches (the figure is drawn at 1 unit = 1 inch).
_NODE_H = 0.62
_CHAR_W = 0.075  # width of one character at the node font size
_MIN_W = 1.7
_LAYER_GAP = 0.62  # vertical room between layers, for arrows and their labels
_NODE_GAP = 0.45
_PAD = 0.25  # inside a compound box or scope
_HEADER_H = 0.5  # title strip of a Parallel/Map box
_MARK = 0.16  # radius of the start/end markers

_OUTCOME_STYLE = {  # outcome -> (fill, edge, text)
    "succeeded": ("#c8e6c9", "#2e7d32", "#1b1b1b"),
    "failed": ("#ffcdd2", "#c62828", "#1b1b1b"),
    "caught": ("#ffe0b2", "#ef6c00", "#1b1b1b"),
    "running": ("#bbdefb", "#1565c0", "#1b1b1b"),
    "not reached": ("#f5f5f5", "#9e9e9e", "#757575"),
    "definition": ("#e8eaf6", "#3949ab", "#1b1b1b"),
}
_OPS = {
    "Equals": "==", "GreaterThan": ">", "GreaterThanEquals": ">=", "LessThan": "<",
    "LessThanEquals": "<=", "Matches": "matches",
}  # fmt: skip


@dataclass
class StateOutcome:
    """What happened to one state during an execution (tallies: Map items run it N times)."""

    entered: int = 0
    succeeded: int = 0
    failed: int = 0
    caught: int = 0
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.entered == 0:
            return "not reached"
        if self.failed:
            return "failed"
        if self.caught:
            return "caught"
        if self.succeeded:
            return "succeeded"
        return "running"


@dataclass
class _Node:
    name: str
    spec: dict[str, Any]
    w: float = 0.0
    h: float = 0.0
    x: float = 0.0  # top-left, after _place
    y: float = 0.0
    scopes: list[_Scope] = field(default_factory=list)  # Parallel branches / Map processor

    @property
    def kind(self) -> str:
        return str(self.spec.get("Type", "?"))


@dataclass
class _Edge:
    src: str
    dst: str
    label: str = ""
    style: str = "next"  # next | choice | catch | end


@dataclass
class _Scope:
    label: str
    nodes: dict[str, _Node]
    edges: list[_Edge]
    layers: list[list[str]] = field(default_factory=list)
    w: float = 0.0
    h: float = 0.0
    x: float = 0.0
    y: float = 0.0


_START, _END = "\x00start", "\x00end"


def _build_scope(machine: Mapping[str, Any], label: str) -> _Scope:
    states = machine.get("States")
    if not isinstance(states, Mapping) or not states:
        raise WorkflowError(f"{label}: no 'States' to draw; expected a state machine definition")
    nodes = {_START: _Node(_START, {}), _END: _Node(_END, {})}
    edges = [_Edge(_START, str(machine.get("StartAt", "")))]
    for name, spec in states.items():
        spec = spec if isinstance(spec, Mapping) else {}
        node = _Node(name, dict(spec))
        nodes[name] = node
        if node.kind == "Parallel":
            node.scopes = [
                _build_scope(b, f"branch {i + 1}") for i, b in enumerate(spec.get("Branches", []))
            ]
        elif node.kind == "Map":
            processor = spec.get("ItemProcessor") or spec.get("Iterator") or {}
            node.scopes = [_build_scope(processor, "each item")]
        edges.extend(_edges_of(name, node.spec))
    # Drop edges to names that do not exist (an invalid definition still draws).
    return _Scope(label, nodes, [e for e in edges if e.dst in nodes])


def _edges_of(name: str, spec: Mapping[str, Any]) -> list[_Edge]:
    out: list[_Edge] = []
    if spec.get("Type") == "Choice":
        for rule in spec.get("Choices", []):
            out.append(_Edge(name, str(rule.get("Next")), _rule_text(rule), "choice"))
        if "Default" in spec:
            out.append(_Edge(name, str(spec["Default"]), "Default", "choice"))
    if "Next" in spec:
        out.append(_Edge(name, str(spec["Next"])))
    for catcher in spec.get("Catch", []):
        errors = ", ".join(catcher.get("ErrorEquals", []))
        out.append(_Edge(name, str(catcher.get("Next")), f"catch {errors}", "catch"))
    if spec.get("End") is True or spec.get("Type") in ("Succeed", "Fail"):
        out.append(_Edge(name, _END, "", "end"))
    return out


def _rule_text(rule: Mapping[str, Any], limit: int = 34) -> str:
    """A short reading of a Choice rule, e.g. `$.confidence >= 0.93`."""
    if "Condition" in rule:  # JSONata
        text = str(rule["Condition"])
    elif "And" in rule or "Or" in rule:
        op = "And" if "And" in rule else "Or"
        text = f" {op.lower()} ".join(_rule_text(r, limit) for r in rule[op])
    elif "Not" in rule:
        text = f"not ({_rule_text(rule['Not'], limit)})"
    else:
        var = str(rule.get("Variable", "?"))
        text = var
        for key, value in rule.items():
            if key in ("Variable", "Next", "Comment"):
                continue
            base = key.removesuffix("Path")
            for prefix in ("String", "Numeric", "Boolean", "Timestamp"):
                base = base.removeprefix(prefix)
            shown = value if key.endswith("Path") else json.dumps(value)
            text = f"{var} {_OPS.get(base, base)} {shown}"
            break
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _measure(scope: _Scope) -> None:
    """Sizes of every node (recursively) and of the scope; assigns layers."""
    for node in scope.nodes.values():
        if node.name in (_START, _END):
            node.w = node.h = 2 * _MARK
        elif node.scopes:
            for sub in node.scopes:
                _measure(sub)
            inner_w = sum(s.w for s in node.scopes) + _NODE_GAP * (len(node.scopes) - 1)
            title_w = len(node.name) * _CHAR_W + 1.4
            node.w = max(inner_w, title_w, _MIN_W) + 2 * _PAD
            node.h = _HEADER_H + max(s.h for s in node.scopes) + _PAD
        else:
            node.w = max(_MIN_W, len(node.name) * _CHAR_W + 0.5)
            node.h = _NODE_H
    scope.layers = _layers(scope)
    widths = [sum(scope.nodes[n].w for n in layer) + _NODE_GAP * (len(layer) - 1)
              for layer in scope.layers]  # fmt: skip
    heights = [max(scope.nodes[n].h for n in layer) for layer in scope.layers]
    # The extra width on the right leaves room for loop-back arrows.
    scope.w = max(widths) + 2 * _PAD + 0.5
    scope.h = sum(heights) + _LAYER_GAP * (len(heights) - 1) + 2 * _PAD + 0.3


def _layers(scope: _Scope) -> list[list[str]]:
    """Longest-path layering after removing back edges found by depth-first search."""
    succ: dict[str, list[str]] = {n: [] for n in scope.nodes}
    for e in scope.edges:
        if e.dst not in succ[e.src]:
            succ[e.src].append(e.dst)
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(n: str) -> None:  # iterative would be safer, but depth <= states (AWS: 10,000)
        state[n] = 1
        for m in succ[n]:
            if state.get(m) == 1:
                back.add((n, m))
            elif m not in state:
                visit(m)
        state[n] = 2
        order.append(n)

    visit(_START)
    for n in scope.nodes:  # unreachable states still get drawn
        if n not in state:
            visit(n)
    order.reverse()  # a topological order of the forward edges
    level = {n: 0 for n in scope.nodes}
    for n in order:
        for m in succ[n]:
            if (n, m) not in back:
                level[m] = max(level[m], level[n] + 1)
    level[_END] = max(v for n, v in level.items() if n != _END) + 1  # the end marker is last
    layers: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for n in order:
        layers[level[n]].append(n)
    # One barycentre sweep: order each layer by the mean position of its predecessors.
    pos = {n: i for i, n in enumerate(layers[0])}
    for layer in layers[1:]:
        preds = {n: [pos[e.src] for e in scope.edges if e.dst == n and e.src in pos] for n in layer}
        layer.sort(key=lambda n: sum(preds[n]) / len(preds[n]) if preds[n] else 0.0)
        pos.update({n: i for i, n in enumerate(layer)})
    return [layer for layer in layers if layer]


def _place(scope: _Scope, x: float, y: float) -> None:
    scope.x, scope.y = x, y
    top = y + _PAD + 0.3  # room for the scope's label
    for layer in scope.layers:
        nodes = [scope.nodes[n] for n in layer]
        width = sum(n.w for n in nodes) + _NODE_GAP * (len(nodes) - 1)
        left = x + (scope.w - 0.5 - width) / 2
        height = max(n.h for n in nodes)
        for node in nodes:
            node.x, node.y = left, top + (height - node.h) / 2 if not node.scopes else top
            left += node.w + _NODE_GAP
            if node.scopes:
                inner = sum(s.w for s in node.scopes) + _NODE_GAP * (len(node.scopes) - 1)
                sx = node.x + (node.w - inner) / 2
                for sub in node.scopes:
                    _place(sub, sx, node.y + _HEADER_H)
                    sx += sub.w + _NODE_GAP
        top += height + _LAYER_GAP


def outcomes_from_history(
    definition: Mapping[str, Any], events: Iterable[Mapping[str, Any]], *, finished: bool = True
) -> dict[str, StateOutcome]:
    """Per-state tallies from GetExecutionHistory-shaped events.

    A state entered and exited succeeded. One entered but never exited failed, unless one
    of its Catch targets was entered after it: then its error was caught. A failure before
    an `ExecutionRedriven` event is forgiven (the redrive ran the state again). With
    `finished=False` (a RUNNING execution) states still open are shown as running.
    """
    catch_targets = _catch_targets(definition)
    out: dict[str, StateOutcome] = {}
    open_states: list[str] = []  # entered, not yet exited, most recent last
    last_error: str | None = None
    for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            name = str(event.get("stateEnteredEventDetails", {}).get("name"))
            # Entering a catch target settles the open state that caught the error.
            for i in range(len(open_states) - 1, -1, -1):
                if name in catch_targets.get(open_states[i], ()):
                    tally = out[open_states.pop(i)]
                    tally.caught += 1
                    break
            tally = out.setdefault(name, StateOutcome())
            tally.entered += 1
            open_states.append(name)
        elif kind.endswith("StateExited"):
            name = str(event.get("stateExitedEventDetails", {}).get("name"))
            out.setdefault(name, StateOutcome()).succeeded += 1
            if name in open_states:
                open_states.reverse()
                open_states.remove(name)  # the most recent entry of that name
                open_states.reverse()
        elif kind.endswith("Failed") or kind.endswith("TimedOut"):
            _key, details = _details(event)
            if isinstance(details, Mapping) and details.get("error"):
                last_error = str(details["error"])
                if open_states:
                    out[open_states[-1]].error = last_error
        elif kind == "ExecutionRedriven":
            for tally in out.values():
                tally.entered -= tally.failed
                tally.failed = 0
            open_states.clear()
    for name in open_states if finished else ():
        out[name].failed += 1
    return out


def _details(event: Mapping[str, Any]) -> tuple[str | None, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails"):
            return key, value
    return None, None


def _catch_targets(machine: Mapping[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, spec in (machine.get("States") or {}).items():
        out[name] = {str(c.get("Next")) for c in spec.get("Catch", [])}
        for sub in [*spec.get("Branches", []), spec.get("ItemProcessor") or spec.get("Iterator")]:
            if isinstance(sub, Mapping):
                out.update(_catch_targets(sub))
    return out


def render_graph(
    definition: Mapping[str, Any],
    out: Path,
    *,
    outcomes: Mapping[str, StateOutcome] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Draw the definition (coloured by `outcomes` when given) to `<out>.svg` and `<out>.png`.

    `out` may end in .svg or .png or have no suffix; both files are written next to each
    other and their paths returned.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; a no-op if already chosen
    from matplotlib.figure import Figure

    scope = _build_scope(definition, "state machine")
    _measure(scope)
    legend_h = 0.45 if outcomes is not None else 0.0
    title_h = 0.45 if title else 0.0
    _place(scope, 0.0, title_h)
    width, height = max(scope.w, 4.0), scope.h + title_h + legend_h
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y grows downward, as the layout does
    ax.set_axis_off()
    if title:
        ax.text(width / 2, 0.3, title, ha="center", va="center", fontsize=11, weight="bold")
    _draw_scope(ax, scope, outcomes, top=True)
    if outcomes is not None:
        _draw_legend(ax, width, height - legend_h / 2)
    stem = out.with_suffix("") if out.suffix.lower() in (".svg", ".png") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".svg"), stem.with_suffix(".png")]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sconeflow"}):
        # Text stays <text> in the SVG; a fixed hash salt makes the SVG reproducible.
        fig.savefig(paths[0], format="svg", metadata={"Date": None})
    fig.savefig(paths[1], format="png", dpi=110)
    return paths


def _draw_scope(ax: Any, scope: _Scope, outcomes: Mapping[str, StateOutcome] | None,
                top: bool = False) -> None:  # fmt: skip
    from matplotlib.patches import Circle, FancyBboxPatch

    if not top:
        ax.add_patch(FancyBboxPatch(
            (scope.x, scope.y), scope.w, scope.h, boxstyle="round,pad=0,rounding_size=0.08",
            fill=False, linestyle=(0, (4, 3)), edgecolor="#78909c", linewidth=0.9,
        ))  # fmt: skip
        ax.text(scope.x + 0.12, scope.y + 0.2, scope.label, fontsize=7.5, color="#546e7a",
                style="italic", va="center")  # fmt: skip
    for edge in scope.edges:
        _draw_edge(ax, scope, edge)
    for node in scope.nodes.values():
        if node.name in (_START, _END):
            cx, cy = node.x + _MARK, node.y + _MARK
            filled = node.name == _START
            ax.add_patch(Circle((cx, cy), _MARK * (0.75 if filled else 1.0),
                                facecolor="#37474f" if filled else "white",
                                edgecolor="#37474f", linewidth=1.5, zorder=3))  # fmt: skip
            if not filled:
                ax.add_patch(Circle((cx, cy), _MARK * 0.55, facecolor="#37474f", zorder=4))
            continue
        tally = outcomes.get(node.name, StateOutcome()) if outcomes is not None else None
        outcome = tally.outcome if tally is not None else "definition"
        fill, edge_c, text_c = _OUTCOME_STYLE[outcome]
        ax.add_patch(FancyBboxPatch(
            (node.x, node.y), node.w, node.h,
            boxstyle="round,pad=0,rounding_size=0.12" if node.kind != "Choice"
            else "round,pad=0,rounding_size=0.3",
            facecolor=fill if not node.scopes else _lighter(fill), edgecolor=edge_c,
            linewidth=1.6 if outcome in ("failed", "caught") else 1.1, zorder=2,
        ))  # fmt: skip
        cx = node.x + node.w / 2
        cy = node.y + (_HEADER_H / 2 if node.scopes else node.h / 2)
        ax.text(cx, cy - 0.09, node.name, ha="center", va="center", fontsize=9,
                weight="bold", color=text_c, zorder=5)  # fmt: skip
        ax.text(
            cx,
            cy + 0.13,
            _subtitle(node, tally),
            ha="center",
            va="center",
            fontsize=7,
            color=text_c if outcome != "not reached" else "#9e9e9e",
            zorder=5,
        )
        for sub in node.scopes:
            _draw_scope(ax, sub, outcomes)


def _subtitle(node: _Node, tally: StateOutcome | None) -> str:
    kind = node.kind
    if kind == "Task":
        resource = str(node.spec.get("Resource", ""))
        kind = "Task · " + (resource.split(":::")[-1] if ":::" in resource else "Lambda")
    elif kind == "Map":
        limit = node.spec.get("MaxConcurrency")
        kind = f"Map · {limit} at a time" if limit else "Map"
    if tally is None or tally.entered == 0:
        return kind
    if tally.failed and tally.error:
        return f"{kind} · {_clip(tally.error, 30)}"
    if tally.caught and tally.error:
        return f"{kind} · caught {_clip(tally.error, 24)}"
    if tally.entered > 1:
        parts = [f"{tally.entered}×"]
        parts += [f"{v} {k}" for k, v in (("ok", tally.succeeded), ("failed", tally.failed),
                                           ("caught", tally.caught)) if v]  # fmt: skip
        return f"{kind} · {' '.join(parts)}"
    return kind


def _draw_edge(ax: Any, scope: _Scope, edge: _Edge) -> None:
    src, dst = scope.nodes[edge.src], scope.nodes[edge.dst]
    colour = {"catch": "#ef6c00", "choice": "#5e35b1"}.get(edge.style, "#455a64")
    style = (0, (4, 2)) if edge.style == "catch" else "solid"
    x0, y0 = src.x + src.w / 2, src.y + src.h
    x1, y1 = dst.x + dst.w / 2, dst.y
    props: dict[str, Any] = {"arrowstyle": "-|>", "color": colour, "linewidth": 1.1,
                             "linestyle": style, "shrinkA": 0, "shrinkB": 1}  # fmt: skip
    if dst.y <= src.y:  # a loop back up: leave and re-enter on the right, curving outside
        x0, y0 = src.x + src.w, src.y + src.h / 2
        x1, y1 = dst.x + dst.w, dst.y + dst.h / 2
        props["connectionstyle"] = "arc3,rad=-0.45"
    elif edge.style == "catch" and abs(x1 - x0) < 0.05:
        props["connectionstyle"] = "arc3,rad=0.25"  # don't hide under a straight Next
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=props, zorder=1)
    if edge.label:
        # Labels sit a third of the way down, so labels of sibling edges spread apart.
        lx, ly = x0 + (x1 - x0) * 0.45, y0 + (y1 - y0) * 0.45
        if dst.y <= src.y:
            lx, ly = max(x0, x1) + 0.25, (y0 + y1) / 2
        ax.text(lx, ly, edge.label, ha="center", va="center", fontsize=6.5, color=colour,
                zorder=6, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white",
                                "edgecolor": "none", "alpha": 0.9})  # fmt: skip


def _draw_legend(ax: Any, width: float, y: float) -> None:
    from matplotlib.patches import FancyBboxPatch

    items = ["succeeded", "failed", "caught", "running", "not reached"]
    x = max(0.1, (width - 1.35 * len(items)) / 2)
    for name in items:
        fill, edge, _ = _OUTCOME_STYLE[name]
        ax.add_patch(FancyBboxPatch((x, y - 0.09), 0.26, 0.18, boxstyle="round,pad=0.01",
                                    facecolor=fill, edgecolor=edge))  # fmt: skip
        ax.text(x + 0.34, y, name, va="center", fontsize=7.5)
        x += 1.35


def _lighter(colour: str) -> str:
    """Half-way to white, for the background of Parallel/Map boxes."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{(c + 255) // 2:02x}" for c in rgb)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
