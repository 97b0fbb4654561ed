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
_CHAR_W = 0.078  # width of one character at the node font size (9 pt bold)
_SMALL_W = 0.056  # ... at the subtitle font size (7 pt)
_MIN_W = 1.7
_LAYER_GAP = 0.7  # vertical room between layers, for arrows and their labels
_NODE_GAP = 0.45
_PAD = 0.25  # inside a compound box or scope
_HEADER_H = 0.5  # title strip of a Parallel/Map box
_MARK = 0.13  # radius of the start/end markers
_LABEL_H = 0.2  # room for a scope's label ("branch 1", "each item")

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
    chains: list[_Chain] = field(default_factory=list)
    w: float = 0.0
    h: float = 0.0
    x: float = 0.0
    y: float = 0.0


_START = "\x00start"
_END = "\x00end:"  # + state name: each terminal state gets its own end marker below it
_DUMMY = "\x00d"  # prefix of the invisible waypoints that carry long edges across layers


@dataclass
class _Chain:
    """One drawn edge: its waypoints from src to dst, reversed if it was a loop back up."""

    edge: _Edge
    names: list[str]
    reversed: bool = False


def _build_scope(machine: Mapping[str, Any], label: str) -> _Scope:
    states = machine.get("States")
    if not isinstance(states, Mapping) or not states:
        raise WorkflowError(f"{label}: no 'States' to draw; expected a state machine definition")
    nodes = {_START: _Node(_START, {})}
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
        if _is_terminal(node):
            # Its own marker, laid out like a node, so other edges route around it; one
            # shared end marker would need long edges across the picture.
            nodes[_END + name] = _Node(_END + name, {})
            edges.append(_Edge(name, _END + name, "", "end"))
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
    return out


def _is_terminal(node: _Node) -> bool:
    return node.spec.get("End") is True or node.kind in ("Succeed", "Fail")


def _rule_text(rule: Mapping[str, Any], limit: int = 30) -> str:
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
    return _clip(text, limit)


def _measure(scope: _Scope, outcomes: Mapping[str, StateOutcome] | None) -> None:
    """Sizes of every node (recursively) and of the scope; layers and edge waypoints."""
    for node in scope.nodes.values():
        if node.name == _START or node.name.startswith(_END):
            node.w = node.h = 2 * _MARK
        elif node.scopes:
            for sub in node.scopes:
                _measure(sub, outcomes)
            inner_w = sum(s.w for s in node.scopes) + _NODE_GAP * (len(node.scopes) - 1)
            title_w = max(len(node.name) * _CHAR_W, len(_subtitle(node, outcomes)) * _SMALL_W)
            node.w = max(inner_w, title_w + 0.4, _MIN_W) + 2 * _PAD
            node.h = _HEADER_H + max(s.h for s in node.scopes) + _PAD
        else:
            text_w = max(len(node.name) * _CHAR_W, len(_subtitle(node, outcomes)) * _SMALL_W)
            node.w = max(_MIN_W, text_w + 0.4)
            node.h = _NODE_H
    scope.layers, scope.chains = _layers(scope)
    widths = [sum(scope.nodes[n].w for n in layer) + _NODE_GAP * (len(layer) - 1)
              for layer in scope.layers]  # fmt: skip
    heights = [max(scope.nodes[n].h for n in layer) for layer in scope.layers]
    scope.w = max(widths) + 2 * _PAD
    scope.h = sum(heights) + _LAYER_GAP * (len(heights) - 1) + 2 * _PAD + _LABEL_H


def _layers(scope: _Scope) -> tuple[list[list[str]], list[_Chain]]:
    """Sugiyama-style layering: reverse loops (found by depth-first search), longest-path
    layers, waypoints for edges that span several layers (so they run between boxes, not
    through them), then barycentre sweeps to reduce crossings."""
    succ: dict[str, list[str]] = {n: [] for n in scope.nodes}
    for e in scope.edges:
        succ[e.src].append(e.dst)
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    seen: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(n: str) -> None:  # recursion depth <= states in one scope
        seen[n] = 1
        for m in succ[n]:
            if seen.get(m) == 1:
                back.add((n, m))
            elif m not in seen:
                visit(m)
        seen[n] = 2
        order.append(n)

    visit(_START)
    for n in list(scope.nodes):  # unreachable states still get drawn
        if n not in seen:
            visit(n)
    order.reverse()  # a topological order of the forward edges
    level = {n: 0 for n in scope.nodes}
    for n in order:
        for m in succ[n]:
            if (n, m) not in back and m != n:
                level[m] = max(level[m], level[n] + 1)
    layers: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for n in order:
        layers[level[n]].append(n)
    chains: list[_Chain] = []
    for e in scope.edges:
        is_back = (e.src, e.dst) in back or e.src == e.dst
        top, bottom = (e.dst, e.src) if is_back else (e.src, e.dst)
        names = [top]
        for lv in range(level[top] + 1, level[bottom]):
            dummy = f"{_DUMMY}{len(scope.nodes)}"
            scope.nodes[dummy] = _Node(dummy, {}, w=0.25)
            layers[lv].append(dummy)
            names.append(dummy)
        names.append(bottom)
        chains.append(_Chain(e, names, is_back))
    links = [(c.names[i], c.names[i + 1]) for c in chains for i in range(len(c.names) - 1)]
    for _sweep in range(2):
        pos = {n: i for i, n in enumerate(layers[0])}
        for layer in layers[1:]:
            preds = {n: [pos[a] for a, b in links if b == n and a in pos] for n in layer}
            current = {n: i for i, n in enumerate(layer)}
            layer.sort(key=lambda n: sum(preds[n]) / len(preds[n]) if preds[n] else current[n])
            pos.update({n: i for i, n in enumerate(layer)})
    return [layer for layer in layers if layer], chains


def _place(scope: _Scope, x: float, y: float) -> None:
    """Positions, top-down: each node as close as it can get below its predecessors
    (the mean of their centres), without overlapping its neighbours in the layer."""
    scope.x, scope.y = x, y
    preds: dict[str, list[str]] = {}
    for chain in scope.chains:
        for a, b in zip(chain.names, chain.names[1:], strict=False):
            preds.setdefault(b, []).append(a)
    lo, hi = x + _PAD, x + scope.w - _PAD
    top = y + _PAD + _LABEL_H
    for layer in scope.layers:
        nodes = [scope.nodes[n] for n in layer]
        height = max(n.h for n in nodes)
        desired = []
        for node in nodes:
            placed = [scope.nodes[p] for p in preds.get(node.name, []) if p not in layer]
            centres = [p.x + p.w / 2 for p in placed] or [(lo + hi) / 2]
            desired.append(sum(centres) / len(centres) - node.w / 2)
        for node, left in zip(nodes, _spread(nodes, desired, lo, hi), strict=True):
            node.x, node.y = left, top
            if node.name.startswith(_DUMMY):
                node.h = height  # a waypoint spans its layer vertically
            if node.scopes:
                inner = sum(s.w for s in node.scopes) + _NODE_GAP * (len(node.scopes) - 1)
                sx = node.x + (node.w - inner) / 2
                for sub in node.scopes:
                    _place(sub, sx, node.y + _HEADER_H)
                    sx += sub.w + _NODE_GAP
        top += height + _LAYER_GAP


def _spread(nodes: list[_Node], desired: list[float], lo: float, hi: float) -> list[float]:
    """Left edges as close to `desired` as possible, in order, `_NODE_GAP` apart, in [lo, hi].

    Nodes that would overlap merge into a block placed at the mean of its members' wishes
    (least squares), merging again while blocks overlap; then one pass each way clamps.
    """
    blocks: list[tuple[list[int], list[float], float]] = []  # members, offsets, width
    lefts: list[float] = []
    for i, node in enumerate(nodes):
        members, offsets, width = [i], [0.0], node.w
        left = desired[i]
        while blocks and lefts[-1] + blocks[-1][2] + _NODE_GAP > left:
            pm, po, pw = blocks.pop()
            lefts.pop()
            offsets = po + [o + pw + _NODE_GAP for o in offsets]
            members, width = pm + members, pw + _NODE_GAP + width
            left = sum(desired[m] - o for m, o in zip(members, offsets, strict=True)) / len(members)
        blocks.append((members, offsets, width))
        lefts.append(left)
    out = [0.0] * len(nodes)
    for (members, offsets, _w), left in zip(blocks, lefts, strict=True):
        for m, o in zip(members, offsets, strict=True):
            out[m] = left + o
    for i in range(len(out)):  # clamp: left bound and no overlap, then the right bound
        floor = lo if i == 0 else out[i - 1] + nodes[i - 1].w + _NODE_GAP
        out[i] = max(out[i], floor)
    for i in range(len(out) - 1, -1, -1):
        ceiling = hi if i == len(out) - 1 else out[i + 1] - _NODE_GAP
        out[i] = min(out[i], ceiling - nodes[i].w)
    return out


def outcomes_from_history(
    definition: Mapping[str, Any], events: Iterable[Mapping[str, Any]], *, finished: bool = True
) -> dict[str, StateOutcome]:
    """Per-state tallies from GetExecutionHistory-shaped events.

    Each event belongs to the state whose `...StateEntered` event starts its
    previousEventId chain (branches and Map iterations are chains of their own, so this
    holds under concurrency too). An entry that exited succeeded, or was caught if an error
    came after its last success; one that never exited failed (or is still running when
    `finished` is False). Entries left open by a failure before an `ExecutionRedriven` event
    are dropped: the redrive ran that state again. `definition` is accepted so callers can
    pass what they drew; the history alone decides.
    """
    owner: dict[int, int] = {}  # event id -> id of the StateEntered event it belongs to
    entries: dict[int, dict[str, Any]] = {}  # entered id -> name, exited, error, pending
    for event in events:
        kind, event_id = str(event.get("type", "")), int(event.get("id", 0))
        mine = owner.get(int(event.get("previousEventId", 0)))
        _key, details = _details(event)
        details = details if isinstance(details, Mapping) else {}
        if kind.endswith("StateEntered"):
            owner[event_id] = event_id
            entries[event_id] = {"name": str(details.get("name")), "exited": False,
                                 "error": None, "pending": False}  # fmt: skip
            continue
        if mine is not None:
            owner[event_id] = mine
        if kind == "ExecutionRedriven":
            for key in [k for k, e in entries.items() if not e["exited"]]:
                del entries[key]
            continue
        entry = entries.get(mine) if mine is not None else None
        if entry is None or entry["exited"]:
            continue
        if kind.endswith("StateExited"):
            entry["exited"] = True
        elif details.get("error"):
            entry["error"], entry["pending"] = str(details["error"]), True
        elif kind.endswith("Succeeded") and not kind.startswith("Execution"):
            entry["pending"] = False  # e.g. a retry that worked
    out: dict[str, StateOutcome] = {}
    for entry in entries.values():
        tally = out.setdefault(entry["name"], StateOutcome())
        tally.entered += 1
        if entry["exited"]:
            if entry["pending"]:
                tally.caught += 1
            else:
                tally.succeeded += 1
        elif finished:
            tally.failed += 1
        if entry["error"] and (entry["pending"] or not entry["exited"]):
            tally.error = entry["error"]
    return out


def _details(event: Mapping[str, Any]) -> tuple[str | None, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails"):
            return key, value
    return None, None


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
    stem = out.with_suffix("") if out.suffix.lower() in (".svg", ".png") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".svg"), stem.with_suffix(".png")]
    fig = _figure(definition, outcomes, title)
    for path in paths:
        path.write_bytes(_save(fig, path.suffix[1:]))
    return paths


def graph_image(
    definition: Mapping[str, Any],
    *,
    outcomes: Mapping[str, StateOutcome] | None = None,
    title: str | None = None,
    fmt: str = "svg",
) -> bytes:
    """The same picture as render_graph, in memory: SVG or PNG bytes (the console's pages)."""
    return _save(_figure(definition, outcomes, title), fmt)


def _figure(definition: Mapping[str, Any], outcomes: Mapping[str, StateOutcome] | None,
            title: str | None) -> Any:  # fmt: skip
    from matplotlib.figure import Figure  # Figure + savefig need no pyplot, no display

    scope = _build_scope(definition, "state machine")
    _measure(scope, outcomes)
    legend_h = 0.5 if outcomes is not None else 0.0
    title_h = 0.45 if title else 0.0
    width = max(scope.w, 7.0 if outcomes is not None else 3.0, len(title or "") * 0.1)
    height = scope.h + title_h + legend_h
    _place(scope, (width - scope.w) / 2, title_h)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y grows downward, as the layout does
    ax.set_axis_off()
    if title:
        _text(ax, width / 2, 0.3, title, fontsize=11, weight="bold")
    _draw_scope(ax, scope, outcomes, depth=0)
    if outcomes is not None:
        _draw_legend(ax, width, height - legend_h / 2)
    return fig


def _save(fig: Any, fmt: str) -> bytes:
    import io

    import matplotlib

    buffer = io.BytesIO()
    if fmt == "svg":
        # Text stays <text> in the SVG; a fixed hash salt and no date make it reproducible.
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sconeflow"}):
            fig.savefig(buffer, format="svg", metadata={"Date": None})
    else:
        fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _text(ax: Any, x: float, y: float, text: str, **kw: Any) -> None:
    # parse_math=False: a `$` in a path or state name is text, not the start of math.
    kw.setdefault("ha", "center")
    kw.setdefault("va", "center")
    ax.text(x, y, text, parse_math=False, **kw)


def _draw_scope(
    ax: Any, scope: _Scope, outcomes: Mapping[str, StateOutcome] | None, depth: int
) -> None:
    from matplotlib.patches import Circle, FancyBboxPatch

    z = 10 * depth  # a nested scope is drawn above the box that holds it
    if depth:
        ax.add_patch(FancyBboxPatch(
            (scope.x, scope.y), scope.w, scope.h, boxstyle="round,pad=0,rounding_size=0.08",
            facecolor="white", linestyle=(0, (4, 3)), edgecolor="#78909c", linewidth=0.9,
            zorder=z,
        ))  # fmt: skip
        _text(ax, scope.x + 0.1, scope.y + 0.16, scope.label, fontsize=7.5, color="#546e7a",
              style="italic", ha="left", zorder=z + 1)  # fmt: skip
    for chain in scope.chains:
        _draw_chain(ax, scope, chain, z + 1)
    for node in scope.nodes.values():
        if node.name.startswith(_DUMMY):
            continue
        if node.name == _START:
            ax.add_patch(Circle((node.x + _MARK, node.y + _MARK), _MARK * 0.8,
                                facecolor="#37474f", zorder=z + 3))  # fmt: skip
            continue
        if node.name.startswith(_END):
            centre = (node.x + _MARK, node.y + _MARK)
            ax.add_patch(Circle(centre, _MARK, facecolor="white", edgecolor="#37474f",
                                linewidth=1.4, zorder=z + 3))  # fmt: skip
            ax.add_patch(Circle(centre, _MARK * 0.55, facecolor="#37474f", zorder=z + 3))
            continue
        tally = outcomes.get(node.name, StateOutcome()) if outcomes is not None else None
        outcome = tally.outcome if tally is not None else "definition"
        fill, edge_c, text_c = _OUTCOME_STYLE[outcome]
        rounding = 0.28 if node.kind == "Choice" else 0.12
        ax.add_patch(FancyBboxPatch(
            (node.x, node.y), node.w, node.h, boxstyle=f"round,pad=0,rounding_size={rounding}",
            facecolor=_lighter(fill) if node.scopes else fill, edgecolor=edge_c,
            linewidth=1.8 if outcome in ("failed", "caught") else 1.1, zorder=z + 2,
        ))  # fmt: skip
        cx = node.x + node.w / 2
        cy = node.y + (_HEADER_H / 2 if node.scopes else node.h / 2)
        _text(ax, cx, cy - 0.09, node.name, fontsize=9, weight="bold", color=text_c,
              zorder=z + 4)  # fmt: skip
        _text(ax, cx, cy + 0.13, _subtitle(node, outcomes), fontsize=7, zorder=z + 4,
              color=edge_c if outcome in ("failed", "caught") else text_c)  # fmt: skip
        for sub in node.scopes:
            _draw_scope(ax, sub, outcomes, depth + 1)


def _subtitle(node: _Node, outcomes: Mapping[str, StateOutcome] | None) -> str:
    """The small second line of a node: its type, and what happened to it if known."""
    kind = node.kind
    if kind == "Task":
        resource = str(node.spec.get("Resource", ""))
        kind = "Task · " + (resource.split(":::")[-1] if ":::" in resource else "Lambda")
    elif kind == "Map":
        limit = node.spec.get("MaxConcurrency")
        kind = f"Map · {limit} at a time" if limit else "Map"
    tally = outcomes.get(node.name) if outcomes is not None else None
    if tally is None or tally.entered == 0:
        return kind
    if tally.entered > 1:  # a Map item processor, a loop or a redrive: counts first
        parts = [f"{v} {k}" for k, v in (("ok", tally.succeeded), ("failed", tally.failed),
                                          ("caught", tally.caught)) if v]  # fmt: skip
        error = f" ({_clip(tally.error, 26)})" if tally.error else ""
        return f"{kind} · {tally.entered}×: {', '.join(parts)}{error}"
    if (tally.failed or tally.caught) and tally.error:
        verb = "failed" if tally.failed else "caught"
        return f"{kind} · {verb}: {_clip(tally.error, 30)}"
    return kind


def _draw_chain(ax: Any, scope: _Scope, chain: _Chain, z: int) -> None:
    """An edge as a polyline through its waypoints; the arrow head at the real target."""
    edge = chain.edge
    colour = {"catch": "#ef6c00", "choice": "#5e35b1"}.get(edge.style, "#455a64")
    style: Any = (0, (4, 2)) if edge.style == "catch" else "solid"
    nodes = [scope.nodes[n] for n in chain.names]
    if len(nodes) == 2 and nodes[0] is nodes[1]:  # a state that loops to itself
        n = nodes[0]
        ax.annotate("", xy=(n.x + n.w, n.y + n.h * 0.3), xytext=(n.x + n.w, n.y + n.h * 0.7),
                    zorder=z, arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.1,
                                          "connectionstyle": "arc3,rad=1.2"})  # fmt: skip
        return
    # Loops attach off-centre, so they do not share the ports of the forward edges.
    port = 0.8 if chain.reversed else 0.5
    points: list[tuple[float, float]] = [(nodes[0].x + nodes[0].w * port, nodes[0].y + nodes[0].h)]
    for dummy in nodes[1:-1]:
        cx = dummy.x + dummy.w / 2
        points += [(cx, dummy.y), (cx, dummy.y + dummy.h)]
    points.append((nodes[-1].x + nodes[-1].w * port, nodes[-1].y))
    if chain.reversed:  # drawn from the loop's target (above) down to its source
        points.reverse()
    xs, ys = zip(*points, strict=True)
    ax.plot(xs[:-1], ys[:-1], color=colour, linestyle=style, linewidth=1.1, zorder=z,
            solid_capstyle="round")  # fmt: skip
    ax.annotate("", xy=points[-1], xytext=points[-2], zorder=z,
                arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": 1.1,
                            "linestyle": style, "shrinkA": 0, "shrinkB": 1})  # fmt: skip
    if edge.label:
        # On the first leg below the source, where sibling edges have already spread apart.
        (x0, y0), (x1, y1) = (
            (points[0], points[1]) if not chain.reversed else (points[-2], points[-1])
        )
        t = 0.55
        _text(ax, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, edge.label, fontsize=6.5,
              color=colour, zorder=z + 5, bbox={"boxstyle": "round,pad=0.15",
              "facecolor": "white", "edgecolor": "none", "alpha": 0.9})  # fmt: skip


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
