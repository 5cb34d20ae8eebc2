"""Sans-I/O writer of the Prometheus text exposition format (version 0.0.4).

``Exposition`` collects metric families (each name once, ``# HELP`` and ``# TYPE``
before its samples) and renders them as one UTF-8 text. Label values and help
texts are escaped as the format requires. Histograms are given non-cumulative
bucket counts and rendered cumulatively with ``le`` labels, ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = Mapping[str, str]


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Labels | None) -> str:
    if not labels:
        return ""
    for key in labels:
        if not _LABEL_RE.match(key) or key.startswith("__"):
            raise ValueError(f"invalid label name {key!r}")
    return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items()) + "}"


class Exposition:
    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def _family(self, name: str, kind: str, help_text: str) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if name in self._names:
            raise ValueError(f"metric {name} written twice")
        self._names.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def _sample(self, name: str, labels: Labels | None, value: float) -> None:
        self._lines.append(f"{name}{_labels(labels)} {format_value(value)}")

    def gauge(self, name: str, help_text: str, value: float, labels: Labels | None = None) -> None:
        self._family(name, "gauge", help_text)
        self._sample(name, labels, value)

    def counter(self, name: str, help_text: str, value: float, labels: Labels | None = None) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self._family(name, "counter", help_text)
        self._sample(name, labels, value)

    def labelled(self, name: str, kind: str, help_text: str,
                 samples: Iterable[tuple[Labels, float]]) -> None:
        """One family with a sample per label set (no sample at all is fine: the family is still declared)."""
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self._family(name, kind, help_text)
        for labels, value in samples:
            self._sample(name, labels, value)

    def histogram(self, name: str, help_text: str, bounds: Sequence[float], counts: Sequence[int],
                  total: float) -> None:
        """``counts[i]``: observations <= ``bounds[i]`` and > the previous bound; ``counts[-1]``: above all."""
        if len(counts) != len(bounds) + 1:
            raise ValueError("counts needs one entry per bound plus one for +Inf")
        self._family(name, "histogram", help_text)
        running = 0
        for bound, n in zip(bounds, counts, strict=False):
            running += n
            self._sample(name + "_bucket", {"le": format_value(float(bound))}, running)
        running += counts[-1]
        self._sample(name + "_bucket", {"le": "+Inf"}, running)
        self._sample(name + "_sum", None, total)
        self._sample(name + "_count", None, running)

    def render(self) -> bytes:
        return ("\n".join(self._lines) + "\n").encode()
