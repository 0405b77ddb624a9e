"""The metric names a PromQL expression reads, and the metric families a /metrics body exposes: what
tests/deploy/test_dashboard.py compares (every name the dashboard and the alert rules use must exist).

Not a PromQL parser: strings, label matchers, ranges, grouping clauses and Grafana's variables are cut out
first; what is left of identifiers is a metric name unless it calls (a function or an aggregation, `(`
after it) or is a keyword. Enough for the expressions of this repository, and strict: a name it does not
understand is reported, never skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"})
KEYWORDS |= {"group_left", "group_right", "inf", "nan", "start", "end"}
# Series Prometheus makes itself for every target, not found on /metrics.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*)(\(|\{)?")
_SELECTOR = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects, e.g. {"outbox_deliveries_total", "up"}."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("1", text)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers: label names are no metrics
    text = _RANGE.sub("", text)  # [5m], [1h:1m]
    text = _GROUPING.sub(" ", text)  # by (subscription), on (instance) ...
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, _, after = match.groups()
        if after == "(" or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def matchers(expr: str) -> dict[str, set[str]]:
    """The label names each selector with matchers filters on: {"outbox_backlog": {"job"}}."""
    text = _VARIABLE.sub("1", _STRING.sub('""', expr))
    found: dict[str, set[str]] = {}
    for match in _SELECTOR.finditer(text):
        found.setdefault(match.group(1), set()).update(_MATCHER.findall(match.group(2)))
    return found


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: dict[str, set[str]] = field(default_factory=dict)  # sample name -> label names seen


def families(body: str) -> dict[str, Family]:
    """The metric families of a Prometheus text exposition (version 0.0.4), by family name."""
    found: dict[str, Family] = {}
    for line in body.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, *rest = line.split(" ", 3)
            family = found.setdefault(name, Family(name))
            setattr(family, kind.lower(), rest[0] if rest else "")
        elif line and not line.startswith("#"):
            sample = re.match(r"([A-Za-z_:][\w:]*)(\{[^}]*\})?", line)
            assert sample, line
            name, labels = sample.group(1), sample.group(2) or ""
            owner = next((f for f in found.values() if name in _sample_names(f)), None)
            assert owner is not None, f"{name} comes before its # TYPE line"
            owner.samples.setdefault(name, set()).update(re.findall(r'([A-Za-z_]\w*)="', labels))
    return found


def _sample_names(family: Family) -> set[str]:
    if family.type in ("histogram", "summary"):
        suffixes = ("_bucket", "_sum", "_count") if family.type == "histogram" else ("", "_sum", "_count")
        return {family.name + s for s in suffixes}
    return {family.name}


def sample_index(exposed: dict[str, Family]) -> dict[str, Family]:
    """Each sample name a query may use (outbox_attempt_duration_seconds_bucket, ...) -> its family."""
    return {name: family for family in exposed.values() for name in _sample_names(family)}
