"""A small, strict parser of the Prometheus text exposition format 0.0.4 (for the tests).

Stricter than scrapers are: every family has exactly one ``# HELP`` and one ``# TYPE``
before its samples, its samples are contiguous, sample names belong to their family
(``_bucket``/``_sum``/``_count`` for histograms), label syntax and escapes are exact,
no series appears twice, counters end in ``_total`` and are >= 0, histogram buckets are
cumulative with ascending ``le`` ending at ``+Inf`` == ``_count``. Anything else raises
``ParseError``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_NAME_RE = re.compile(rf"^{NAME}$")
_HELP_RE = re.compile(rf"^# HELP ({NAME}) (.*)$")
_TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
_SAMPLE_RE = re.compile(rf"^({NAME})(\{{.*\}})? (\S+)$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"')
_KINDS_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


class ParseError(ValueError):
    pass


@dataclass
class Family:
    name: str
    kind: str = ""
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, **labels: str) -> float:
        """The value of the one sample whose labels include ``labels`` (0 if none: counters start absent)."""
        found = [v for n, lab, v in self.samples if n == self.name and all(lab.get(k) == x for k, x in labels.items())]
        if len(found) > 1:
            raise KeyError(f"{self.name}{labels}: {len(found)} samples")
        return found[0] if found else 0.0

    def by(self, label: str) -> dict[str, float]:
        return {lab[label]: v for n, lab, v in self.samples if n == self.name}


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    inner = text[1:-1]
    out: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        m = _LABEL_RE.match(inner, pos)
        if m is None:
            raise ParseError(f"bad label syntax at {inner[pos:]!r}")
        if m.group(1) in out:
            raise ParseError(f"label {m.group(1)} twice")
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
        if pos < len(inner):
            if inner[pos] != ",":
                raise ParseError(f"expected ',' in labels {text!r}")
            pos += 1
    return out


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$", text):
        raise ParseError(f"bad value {text!r}")
    return float(text)


def parse(text: str) -> dict[str, Family]:
    if not text.endswith("\n"):
        raise ParseError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    seen_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {lineno}: {line!r}"
        if not line:
            raise ParseError(f"blank {where}")
        if line.startswith("#"):
            m = _HELP_RE.match(line)
            if m:
                name = m.group(1)
                if name in families:
                    raise ParseError(f"family declared twice, {where}")
                current = families[name] = Family(name, help=m.group(2))
                continue
            m = _TYPE_RE.match(line)
            if m:
                if current is None or current.name != m.group(1) or current.kind or current.samples:
                    raise ParseError(f"TYPE must follow its HELP, before samples, {where}")
                current.kind = m.group(2)
                continue
            raise ParseError(f"unexpected comment, {where}")
        m = _SAMPLE_RE.match(line)
        if m is None:
            raise ParseError(f"bad sample, {where}")
        name, labels, value = m.group(1), _labels(m.group(2)), _value(m.group(3))
        if current is None or not current.kind:
            raise ParseError(f"sample before HELP/TYPE, {where}")
        suffixes = _KINDS_SUFFIXES.get(current.kind, ("",))
        if not any(name == current.name + s for s in suffixes):
            raise ParseError(f"sample {name} outside its family {current.name}, {where}")
        series = (name, tuple(sorted(labels.items())))
        if series in seen_series:
            raise ParseError(f"series twice, {where}")
        seen_series.add(series)
        if current.kind == "counter":
            if not name.endswith("_total"):
                raise ParseError(f"counter without _total, {where}")
            if not value >= 0:
                raise ParseError(f"negative counter, {where}")
        current.samples.append((name, labels, value))
    for fam in families.values():
        if not fam.kind:
            raise ParseError(f"{fam.name}: HELP without TYPE")
        if fam.kind == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam: Family) -> None:
    """Each series of the histogram (its labels but ``le``, e.g. one per worker) checked on its own."""
    series = sorted({tuple(sorted((k, v) for k, v in lab.items() if k != "le")) for _n, lab, _v in fam.samples})
    for key in series:
        mine = [(n, lab, v) for n, lab, v in fam.samples
                if tuple(sorted((k, x) for k, x in lab.items() if k != "le")) == key]
        _check_one_histogram(fam.name, mine)


def _check_one_histogram(name: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
    buckets = [(lab, v) for n, lab, v in samples if n == name + "_bucket"]
    counts = [v for n, _lab, v in samples if n == name + "_count"]
    sums = [v for n, _lab, v in samples if n == name + "_sum"]
    if not buckets or len(counts) != 1 or len(sums) != 1:
        raise ParseError(f"{name}: needs buckets, one _sum and one _count")
    bounds = [_value(lab["le"]) for lab, _v in buckets]
    if bounds != sorted(bounds) or len(set(bounds)) != len(bounds) or not math.isinf(bounds[-1]):
        raise ParseError(f"{name}: le bounds must ascend to +Inf")
    values = [v for _lab, v in buckets]
    if values != sorted(values):
        raise ParseError(f"{name}: buckets not cumulative")
    if values[-1] != counts[0]:
        raise ParseError(f"{name}: +Inf bucket {values[-1]} != _count {counts[0]}")
    if sums[0] < 0:
        raise ParseError(f"{name}: negative _sum")
