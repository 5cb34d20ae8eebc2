"""``/metrics`` for the node: every worker's exposition, each sample labelled with its ``worker``.

Whichever worker Prometheus reaches asks its siblings for their own exposition (over their private
Unix sockets, ``relay.node.handoff``) and merges them: one family per metric name (``# HELP`` and
``# TYPE`` once, then every worker's samples), each sample with ``worker="<index>"`` added, plus
the node's own series (``relay_node_workers``, ``relay_worker_restarts_total``). Metric names do
not change; ``sum()`` over a name gives the node, ``by (worker)`` the spread. A worker that does
not answer (restarting) is left out of that scrape. Sans I/O: ``merge`` takes the texts.
"""

from __future__ import annotations

import re

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?( .*)$")


def _labelled(line: str, worker: int) -> str:
    match = _SAMPLE.match(line)
    if match is None:
        return line
    name, labels, rest = match.groups()
    inner = labels[1:-1] if labels else ""
    added = f'worker="{worker}"' + ("," + inner if inner else "")
    return f"{name}{{{added}}}{rest}"


def merge(parts: list[tuple[int, str]], *, workers: int, restarts: int) -> str:
    """One exposition from each worker's ``(index, text)``, samples labelled by worker."""
    order: list[str] = []
    meta: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in parts:
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# "):
                kind, _, rest = line[2:].partition(" ")
                name = rest.split(" ", 1)[0]
                if kind in ("HELP", "TYPE"):
                    family = name
                    if name not in meta:
                        order.append(name)
                        meta[name], samples[name] = [], []
                    if len(meta[name]) < 2 and not any(m.startswith(f"# {kind} ") for m in meta[name]):
                        meta[name].append(line)
                continue
            samples.setdefault(family, []).append(_labelled(line, worker))
    out: list[str] = [
        "# HELP relay_node_workers Worker processes of this node (relay serve --workers)",
        "# TYPE relay_node_workers gauge",
        f"relay_node_workers {workers}",
        "# HELP relay_worker_restarts_total Workers restarted after they exited unexpectedly",
        "# TYPE relay_worker_restarts_total counter",
        f"relay_worker_restarts_total {restarts}",
    ]
    for name in order:
        out.extend(meta[name])
        out.extend(samples.get(name, []))
    return "\n".join(out) + "\n"
