"""Consumers (issue 22): which mapping language turns a webhook payload into a CloudEvent.

Candidates: JSONata (`jsonata-python`, pure Python; `jsonatapy`, Rust), jq (`jq`, libjq binding) and JMESPath
(`jmespath`). For each, the SAME three mappings (a Stripe-shaped `payment_intent.succeeded`, a GitHub push, an
e-signing "document signed" callback) produce a CloudEvent-shaped dict. Measured on one core (sched_setaffinity):
compile time, evaluation time per payload (median and p99, µs), memory (RSS after import and after the runs, in a
fresh process per language). Then safety probes, each in its own process with a wall-clock limit and RLIMIT_AS:
file, environment and network access, unbounded recursion/loops, huge string/array builds, and whether the
library's own bounds (timeout, stack depth, sequence length) stop them.

    .venv/bin/python bench/mapping_languages.py            # everything, prints tables (about 2 minutes)
    .venv/bin/python bench/mapping_languages.py --runs 500  # fewer evaluations per payload
    .venv/bin/python bench/mapping_languages.py --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

LANGS = ["jsonata-python", "jsonatapy", "jq", "jmespath"]

# --------------------------------------------------------------------------------------------------------------
# Payloads


def payment_payload() -> dict[str, Any]:
    """Stripe-shaped event (epoch seconds, amounts in cents), with Mollie-like status values; about 2 KB."""
    lines = [
        {"sku": f"SKU-{i:04d}", "description": f"Parkeervergunning zone {i}", "quantity": i % 3 + 1, "amount": 1250 * i}
        for i in range(1, 9)
    ]
    return {
        "id": "evt_1QfZ2nLkdIwHu7ixVb8XyZ01",
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1796637300,
        "livemode": True,
        "pending_webhooks": 1,
        "request": {"id": "req_8a7Sd9f0", "idempotency_key": "b5a1c0d2-7f3e-4e55-9a0c-2f1b9d8e7c6a"},
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_3QfZ2mLkdIwHu7ix0w8S7Tq4",
                "object": "payment_intent",
                "amount": sum(line["amount"] for line in lines),
                "amount_received": sum(line["amount"] for line in lines),
                "currency": "eur",
                "status": "PAID",
                "description": "Gemeente Voorbeeld, factuur 2026-000123",
                "customer": "cus_R9x8Y7z6",
                "payment_method_types": ["ideal", "card"],
                "latest_charge": "ch_3QfZ2mLkdIwHu7ix0x1y2z3a",
                "metadata": {
                    "zaak": "ZAAK-2026-0000123",
                    "bsn_hash": "9f86d081884c7d659a2feaa0c55ad015",
                    "org": "0363",
                },
                "lines": {"object": "list", "data": lines, "has_more": False},
                "shipping": None,
                "statement_descriptor": "GEM VOORBEELD",
            }
        },
    }


def github_push_payload() -> dict[str, Any]:
    """A GitHub push event with five commits; about 5 KB."""
    user = {"name": "Ada de Vries", "email": "ada@example.nl", "username": "adadevries"}
    commits = [
        {
            "id": f"{i:02d}e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9",
            "tree_id": f"{i:02d}aa0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8",
            "distinct": True,
            "message": f"Fix {i}: mapping of zaaktype omschrijving\n\nLonger body for commit {i}.",
            "timestamp": f"2026-12-07T10:1{i}:00+01:00",
            "url": f"https://github.com/gemeente/outbox/commit/{i:02d}e1f2a3b4c5d6",
            "author": user,
            "committer": user,
            "added": [f"src/new_{i}.py"],
            "removed": [],
            "modified": ["README.md", f"src/mod_{i}.py"],
        }
        for i in range(5)
    ]
    owner = {
        "login": "gemeente",
        "id": 1234567,
        "node_id": "MDEyOk9yZ2FuaXphdGlvbjEyMzQ1Njc=",
        "avatar_url": "https://avatars.githubusercontent.com/u/1234567?v=4",
        "url": "https://api.github.com/users/gemeente",
        "html_url": "https://github.com/gemeente",
        "type": "Organization",
        "site_admin": False,
    }
    repo = {
        "id": 765432109,
        "node_id": "R_kgDOLZ8x1Q",
        "name": "outbox",
        "full_name": "gemeente/outbox",
        "private": False,
        "owner": owner,
        "html_url": "https://github.com/gemeente/outbox",
        "description": "Transactional outbox for NL GOV CloudEvents",
        "fork": False,
        "url": "https://github.com/gemeente/outbox",
        "created_at": 1735689600,
        "updated_at": "2026-12-07T09:00:00Z",
        "pushed_at": 1796638200,
        "git_url": "git://github.com/gemeente/outbox.git",
        "ssh_url": "git@github.com:gemeente/outbox.git",
        "clone_url": "https://github.com/gemeente/outbox.git",
        "size": 2048,
        "stargazers_count": 12,
        "language": "Python",
        "default_branch": "main",
        "topics": ["cloudevents", "outbox", "nl-gov"],
        "visibility": "public",
    }
    return {
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "04e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9",
        "repository": repo,
        "pusher": {"name": "adadevries", "email": "ada@example.nl"},
        "organization": {"login": "gemeente", "id": 1234567, "url": "https://api.github.com/orgs/gemeente"},
        "sender": owner,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": "https://github.com/gemeente/outbox/compare/000000000000...04e1f2a3b4c5",
        "commits": commits,
        "head_commit": commits[-1],
    }


def esign_payload() -> dict[str, Any]:
    """An e-signing provider's "document signed" callback (ISO timestamps, signers array); about 1.5 KB."""
    return {
        "event_id": "6f1c2b8e-3d4a-4c5b-9e7f-0a1b2c3d4e5f",
        "event_type": "DOCUMENT_SIGNED",
        "occurred_at": "2026-12-07T10:20:31Z",
        "account_id": "acc_0363",
        "envelope": {
            "id": "env_9Qw8Er7Ty6",
            "title": "Omgevingsvergunning OLO-2026-4711",
            "status": "completed",
            "created_at": "2026-12-01T08:00:00Z",
            "documents": [
                {"id": "doc_1", "name": "besluit.pdf", "pages": 12, "sha256": "a" * 64},
                {"id": "doc_2", "name": "bijlage-tekening.pdf", "pages": 3, "sha256": "b" * 64},
            ],
            "signers": [
                {
                    "id": f"sig_{i}",
                    "name": name,
                    "email": f"{name.split()[0].lower()}@example.nl",
                    "role": role,
                    "signed_at": f"2026-12-07T10:{10 + i}:00Z",
                    "method": "eherkenning" if role == "gemachtigde" else "digid",
                    "ip": "192.0.2.10",
                }
                for i, (name, role) in enumerate(
                    [("Jan Jansen", "aanvrager"), ("Piet Pietersen", "gemachtigde"), ("Kees Klaassen", "behandelaar")]
                )
            ],
            "metadata": {"zaak": "ZAAK-2026-0004711", "zaaktype": "omgevingsvergunning"},
        },
    }


PAYLOADS = {"payment": payment_payload, "github_push": github_push_payload, "esign": esign_payload}

# --------------------------------------------------------------------------------------------------------------
# The mappings. Each yields {specversion, type, source, subject, id, time, datacontenttype, data}.
#   payment: type = "nl.example.betaling." + lookup(lower(status)) (paid → betaald …), time from epoch seconds,
#            data: renamed keys, lines mapped to {artikel, aantal, bedrag}, count and sum of the lines.
#   github_push: type = "nl.example.code." + (created ? "branch-aangemaakt" : "push"), subject = repo full name,
#            id = after, time = head commit timestamp, data: branch (ref without refs/heads/), commits mapped, count.
#   esign:   type = "nl.example.ondertekening." + lookup(lower(event_type)), subject = envelope id, id = event_id,
#            time as is, data: zaak, signers mapped, count, total pages (sum).
# JMESPath has no lower-case, no dynamic lookup, no conditional on a value other than `||`/`&&`, no string
# slicing/replace and no date functions: where it cannot, the expression leaves the field to Python (marked
# in the result table as "no").

JSONATA = {
    "payment": """(
  $o := data.object;
  $st := $lowercase($o.status);
  {
    "specversion": "1.0",
    "type": "nl.example.betaling." & $lookup({"paid": "betaald", "failed": "mislukt", "canceled": "geannuleerd",
                                              "expired": "verlopen", "open": "open"}, $st),
    "source": "urn:nld:oin:00000001234567890000:consumer:psp",
    "subject": $o.metadata.zaak,
    "id": id,
    "time": $fromMillis(created * 1000, "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z"),
    "datacontenttype": "application/json",
    "data": {
      "betaling": $o.id,
      "bedrag": $o.amount,
      "valuta": $uppercase($o.currency),
      "omschrijving": $o.description,
      "regels": [$o.lines.data.{"artikel": sku, "aantal": quantity, "bedrag": amount}],
      "aantalRegels": $count($o.lines.data),
      "totaal": $sum($o.lines.data.amount)
    }
  }
)""",
    "github_push": """{
  "specversion": "1.0",
  "type": "nl.example.code." & (created ? "branch-aangemaakt" : "push"),
  "source": "urn:nld:oin:00000001234567890000:consumer:github",
  "subject": repository.full_name,
  "id": after,
  "time": head_commit.timestamp,
  "datacontenttype": "application/json",
  "data": {
    "repository": repository.full_name,
    "branch": $replace(ref, "refs/heads/", ""),
    "door": pusher.name,
    "commits": [commits.{"sha": id, "bericht": $substringBefore(message, "\n"), "auteur": author.username}],
    "aantalCommits": $count(commits)
  }
}""",
    "esign": """{
  "specversion": "1.0",
  "type": "nl.example.ondertekening." & $lookup({"document_signed": "getekend", "document_declined": "geweigerd",
                                                  "envelope_expired": "verlopen"}, $lowercase(event_type)),
  "source": "urn:nld:oin:00000001234567890000:consumer:esign",
  "subject": envelope.id,
  "id": event_id,
  "time": occurred_at,
  "datacontenttype": "application/json",
  "data": {
    "zaak": envelope.metadata.zaak,
    "titel": envelope.title,
    "ondertekenaars": [envelope.signers.{"naam": name, "rol": role, "getekendOp": signed_at, "middel": method}],
    "aantalOndertekenaars": $count(envelope.signers),
    "paginas": $sum(envelope.documents.pages)
  }
}""",
}

JQ = {
    "payment": """.data.object as $o
| ($o.status | ascii_downcase) as $st
| {
    specversion: "1.0",
    type: ("nl.example.betaling." + ({paid: "betaald", failed: "mislukt", canceled: "geannuleerd",
                                       expired: "verlopen", open: "open"}[$st])),
    source: "urn:nld:oin:00000001234567890000:consumer:psp",
    subject: $o.metadata.zaak,
    id: .id,
    time: (.created | todate),
    datacontenttype: "application/json",
    data: {
      betaling: $o.id,
      bedrag: $o.amount,
      valuta: ($o.currency | ascii_upcase),
      omschrijving: $o.description,
      regels: [$o.lines.data[] | {artikel: .sku, aantal: .quantity, bedrag: .amount}],
      aantalRegels: ($o.lines.data | length),
      totaal: ([$o.lines.data[].amount] | add)
    }
  }""",
    "github_push": """{
  specversion: "1.0",
  type: ("nl.example.code." + (if .created then "branch-aangemaakt" else "push" end)),
  source: "urn:nld:oin:00000001234567890000:consumer:github",
  subject: .repository.full_name,
  id: .after,
  time: .head_commit.timestamp,
  datacontenttype: "application/json",
  data: {
    repository: .repository.full_name,
    branch: (.ref | ltrimstr("refs/heads/")),
    door: .pusher.name,
    commits: [.commits[] | {sha: .id, bericht: (.message | split("\\n")[0]), auteur: .author.username}],
    aantalCommits: (.commits | length)
  }
}""",
    "esign": """{
  specversion: "1.0",
  type: ("nl.example.ondertekening." + ({document_signed: "getekend", document_declined: "geweigerd",
                                          envelope_expired: "verlopen"}[.event_type | ascii_downcase])),
  source: "urn:nld:oin:00000001234567890000:consumer:esign",
  subject: .envelope.id,
  id: .event_id,
  time: .occurred_at,
  datacontenttype: "application/json",
  data: {
    zaak: .envelope.metadata.zaak,
    titel: .envelope.title,
    ondertekenaars: [.envelope.signers[] | {naam: .name, rol: .role, getekendOp: .signed_at, middel: .method}],
    aantalOndertekenaars: (.envelope.signers | length),
    paginas: ([.envelope.documents[].pages] | add)
  }
}""",
}

# JMESPath: what it can express. Missing pieces (lower-case + lookup, epoch → RFC 3339, conditional on a boolean
# field, prefix strip) are finished in Python by JMESPATH_POST, so that the output is comparable; the table marks
# those features "no".
JMESPATH = {
    "payment": """{
  specversion: '1.0',
  status: data.object.status,
  source: 'urn:nld:oin:00000001234567890000:consumer:psp',
  subject: data.object.metadata.zaak,
  id: id,
  created: created,
  datacontenttype: 'application/json',
  data: {
    betaling: data.object.id,
    bedrag: data.object.amount,
    valuta: data.object.currency,
    omschrijving: data.object.description,
    regels: data.object.lines.data[].{artikel: sku, aantal: quantity, bedrag: amount},
    aantalRegels: length(data.object.lines.data),
    totaal: sum(data.object.lines.data[].amount)
  }
}""",
    "github_push": """{
  specversion: '1.0',
  created: created,
  source: 'urn:nld:oin:00000001234567890000:consumer:github',
  subject: repository.full_name,
  id: after,
  time: head_commit.timestamp,
  datacontenttype: 'application/json',
  data: {
    repository: repository.full_name,
    branch: ref,
    door: pusher.name,
    commits: commits[].{sha: id, bericht: message, auteur: author.username},
    aantalCommits: length(commits)
  }
}""",
    "esign": """{
  specversion: '1.0',
  event_type: event_type,
  source: 'urn:nld:oin:00000001234567890000:consumer:esign',
  subject: envelope.id,
  id: event_id,
  time: occurred_at,
  datacontenttype: 'application/json',
  data: {
    zaak: envelope.metadata.zaak,
    titel: envelope.title,
    ondertekenaars: envelope.signers[].{naam: name, rol: role, getekendOp: signed_at, middel: method},
    aantalOndertekenaars: length(envelope.signers),
    paginas: sum(envelope.documents[].pages)
  }
}""",
}

PAY = {"paid": "betaald", "failed": "mislukt", "canceled": "geannuleerd", "expired": "verlopen", "open": "open"}
SIGN = {"document_signed": "getekend", "document_declined": "geweigerd", "envelope_expired": "verlopen"}


def jmespath_post(name: str, out: dict[str, Any]) -> dict[str, Any]:
    """What JMESPath cannot say, done in Python (counted in its evaluation time)."""
    import datetime as dt

    if name == "payment":
        out["type"] = "nl.example.betaling." + PAY[out.pop("status").lower()]
        out["time"] = dt.datetime.fromtimestamp(out.pop("created"), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out["data"]["valuta"] = out["data"]["valuta"].upper()
    elif name == "github_push":
        out["type"] = "nl.example.code." + ("branch-aangemaakt" if out.pop("created") else "push")
        out["data"]["branch"] = out["data"]["branch"].removeprefix("refs/heads/")
        for c in out["data"]["commits"]:
            c["bericht"] = c["bericht"].split("\n")[0]
    else:
        out["type"] = "nl.example.ondertekening." + SIGN[out.pop("event_type").lower()]
    return out


# --------------------------------------------------------------------------------------------------------------
# Adapters: compile(text) -> callable(payload) -> dict


def adapter(lang: str) -> Any:
    if lang == "jsonata-python":
        import jsonata

        return lambda name: jsonata.Jsonata(JSONATA[name]).evaluate
    if lang == "jsonatapy":
        import jsonatapy

        return lambda name: jsonatapy.compile(JSONATA[name]).evaluate
    if lang == "jq":
        import jq

        def jq_compile(name: str) -> Any:
            prog = jq.compile(JQ[name])
            return lambda payload: prog.input_value(payload).first()

        return jq_compile
    if lang == "jmespath":
        import jmespath
        import jmespath.parser

        def jp_compile(name: str) -> Any:
            jmespath.parser.Parser._CACHE.clear()  # it caches parsed expressions: measure a real parse
            expr = jmespath.compile(JMESPATH[name])
            return lambda payload: jmespath_post(name, expr.search(payload))

        return jp_compile
    raise ValueError(lang)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def measure(lang: str, runs: int) -> dict[str, Any]:
    """Run in a fresh process pinned to one core."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rss0 = rss_kib()
    compiler = adapter(lang)
    rss_import = rss_kib()
    result: dict[str, Any] = {"lang": lang, "import_rss_kib": rss_import - rss0, "payloads": {}}
    for name, make in PAYLOADS.items():
        payload = make()
        compile_us = []
        for _ in range(max(20, runs // 50)):
            t0 = time.perf_counter_ns()
            fn = compiler(name)
            compile_us.append((time.perf_counter_ns() - t0) / 1000)
        out = fn(payload)
        for _ in range(min(100, runs)):  # warm-up
            fn(payload)
        ev = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            fn(payload)
            ev.append((time.perf_counter_ns() - t0) / 1000)
        result["payloads"][name] = {
            "bytes": len(json.dumps(payload)),
            "compile_us": statistics.median(compile_us),
            "eval_median_us": statistics.median(ev),
            "eval_p99_us": pct(ev, 99),
            "output": out,
        }
    result["rss_after_kib"] = rss_kib() - rss0
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result


# --------------------------------------------------------------------------------------------------------------
# Safety probes: (probe name, {lang: (expression, evaluate-kwargs)}). Each runs in a child process limited to
# PROBE_WALL seconds and PROBE_AS bytes of address space; the outcome is what the child reported or how it died.

PROBE_WALL = 5.0
PROBE_AS = 2 * 1024**3

PROBES: dict[str, dict[str, str]] = {
    "read env var": {
        "jsonata": "$env('HOME')",
        "jq": "$ENV.HOME",
        "jmespath": "env('HOME')",
    },
    "read file (JSON module import)": {
        "jsonata": "$readFile('/etc/hostname')",
        "jq": 'import "probe" as $d; $d',
        "jmespath": "read_file('/etc/hostname')",
    },
    "write to stderr": {"jsonata": "$log('x')", "jq": '"leak" | stderr', "jmespath": "log('x')"},
    "network": {
        "jsonata": "$httpGet('http://127.0.0.1:9/')",
        "jq": 'import "http://127.0.0.1:9/x" as $d; $d',
        "jmespath": "http('http://127.0.0.1:9/')",
    },
    "eval a string as code": {"jsonata": "$eval('1+1')", "jq": '"1+1" | eval', "jmespath": "eval('1+1')"},
    "infinite recursion": {
        "jsonata": "($f := function($n){ $f($n + 1) }; $f(0))",
        "jq": "def f(n): f(n + 1); f(0)",
        "jmespath": "",
    },
    "endless loop": {
        "jsonata": "($f := function($n){ $n < 0 ? 0 : $f($n + 1) }; $f(0))",
        "jq": "last(range(1e15))",
        "jmespath": "",
    },
    "huge string (1e9 chars)": {
        "jsonata": "$pad('', 1000000000, 'x')",
        "jq": '"x" * 1e9 | length',
        "jmespath": "",
    },
    "huge array (1e8 items)": {
        "jsonata": "$count([1..100000000])",
        "jq": "[range(1e8)] | length",
        "jmespath": "",
    },
    "5^10 cross product over the payload's commits": {
        "jsonata": "$count(" + "$$.commits.(" * 9 + "$$.commits" + ")" * 9 + ")",
        "jq": "[" + ".commits[] as $x | " * 9 + ".commits[]] | length",
        "jmespath": "",
    },
}

BOUNDS = {
    "jsonata-python": {"timeout": 1000, "stack": 500},
    "jsonatapy": {"timeout": 1000, "max_stack_depth": 500, "max_sequence_length": 1_000_000},
}


def probe_child(lang: str, expr: str, bounded: bool) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (PROBE_AS, PROBE_AS))
    payload = github_push_payload()
    t0 = time.perf_counter()
    try:
        if lang == "jsonata-python":
            import jsonata

            kw = BOUNDS[lang] if bounded else {}
            out = jsonata.Jsonata(expr, **kw).evaluate(payload)
        elif lang == "jsonatapy":
            import jsonatapy

            kw = BOUNDS[lang] if bounded else {}
            out = jsonatapy.compile(expr).evaluate(payload, **kw)
        elif lang == "jq":
            import jq

            out = jq.compile(expr).input_value(payload).first()
        else:
            import jmespath

            out = jmespath.search(expr, payload)
        text = repr(out)
        res = {"outcome": "value", "detail": text[:60] + ("…" if len(text) > 60 else "")}
    except MemoryError:
        res = {"outcome": "MemoryError", "detail": ""}
    except RecursionError:
        res = {"outcome": "RecursionError", "detail": ""}
    except Exception as e:
        res = {"outcome": "error", "detail": f"{type(e).__name__}: {str(e).splitlines()[0][:70]}"}
    res["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(res))


def run_probe(lang: str, expr: str, bounded: bool) -> dict[str, Any]:
    if not expr:
        return {"outcome": "n/a", "detail": "not expressible", "seconds": 0}
    cmd = [sys.executable, __file__, "--probe-child", lang, expr] + (["--bounded"] if bounded else [])
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_WALL, cwd=PROBE_DIR)
    except subprocess.TimeoutExpired:
        return {"outcome": "KILLED", "detail": f"still running after {PROBE_WALL:.0f} s", "seconds": PROBE_WALL}
    elapsed = round(time.perf_counter() - t0, 2)
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines:
        res = json.loads(lines[-1])
        if p.stderr.strip():
            res["stderr"] = p.stderr.strip()[:60]
        return res
    tail = (p.stderr.strip().splitlines() or [""])[-1][:70]
    return {"outcome": f"crash rc={p.returncode}", "detail": tail, "seconds": elapsed}


PROBE_DIR = os.path.join(tempfile.gettempdir(), "mapping-languages-probe")


def probes() -> dict[str, dict[str, Any]]:
    os.makedirs(PROBE_DIR, exist_ok=True)
    with open(os.path.join(PROBE_DIR, "probe.json"), "w") as f:
        json.dump({"secret": "read from probe.json in the working directory"}, f)
    out: dict[str, dict[str, Any]] = {}
    for probe, exprs in PROBES.items():
        row = {}
        for lang in LANGS:
            family = "jsonata" if lang.startswith("jsonata") else lang
            expr = exprs[family]
            row[lang] = run_probe(lang, expr, bounded=False)
            if lang in BOUNDS:
                row[lang + " (bounded)"] = run_probe(lang, expr, bounded=True)
        out[probe] = row
    return out


def extra_checks() -> dict[str, str]:
    """Things found on the way: GIL, timeout clock, thread cut-off."""
    import threading

    import jq
    import jsonata

    res = {}
    # 1. jsonata-python starts its timeout clock when the expression is compiled, not per evaluation.
    expr = jsonata.Jsonata("1 + 1", timeout=200)
    time.sleep(0.3)
    try:
        expr.evaluate({})
        res["jsonata-python timeout clock"] = "per evaluation"
    except Exception as e:
        res["jsonata-python timeout clock"] = f"from compile: a cached expression fails later ({e})"
    # 2. Does jq hold the GIL (can a watchdog thread run while it evaluates)? Loop turns of the main thread while
    #    jq works in another thread, against loop turns of an idle main thread over the same time.
    prog = jq.compile("last(range(1e7))")
    t = threading.Thread(target=lambda: prog.input_value(None).first())
    n = 0
    t0 = time.perf_counter()
    t.start()
    while t.is_alive():
        n += 1
    busy = time.perf_counter() - t0
    idle = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < busy:
        idle += 1
    res["jq and the GIL"] = (
        f"main thread: {n} loop turns in {busy:.2f} s while jq ran in a thread, {idle} turns idle"
        + (" (GIL held: no in-process watchdog runs)" if n * 100 < idle else "")
    )
    # 3. jsonatapy: a compiled expression is bound to the thread that compiled it (pyo3 "unsendable").
    import jsonatapy

    compiled = jsonatapy.compile("1 + 1")
    box: dict[str, str] = {}

    def other_thread() -> None:
        try:
            box["r"] = f"usable from another thread ({compiled.evaluate({})})"
        except BaseException as e:  # pyo3's PanicException derives from BaseException
            box["r"] = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    res["jsonatapy compiled expression in another thread"] = box["r"]
    # 4. jsonatapy and the GIL: a runaway expression bounded by timeout=1000, evaluated in a thread.
    src = "($f := function($n){ $n < 0 ? 0 : $f($n + 1) }; $f(0))"

    def runaway() -> None:
        with contextlib.suppress(ValueError):
            jsonatapy.compile(src).evaluate({}, timeout=1000)

    t = threading.Thread(target=runaway)
    n = 0
    t0 = time.perf_counter()
    t.start()
    while t.is_alive():
        n += 1
    busy = time.perf_counter() - t0
    res["jsonatapy and the GIL"] = (
        f"main thread: {n} loop turns in {busy:.2f} s while jsonatapy ran (timeout=1000) in a thread"
        + (" (GIL held)" if n * 100 < idle else "")
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5000)
    ap.add_argument("--json")
    ap.add_argument("--one")
    ap.add_argument("--probe-child", nargs=2)
    ap.add_argument("--bounded", action="store_true")
    ap.add_argument("--no-probes", action="store_true")
    a = ap.parse_args()
    if a.probe_child:
        probe_child(*a.probe_child, a.bounded)
        return
    if a.one:
        print(json.dumps(measure(a.one, a.runs)))
        return

    from importlib.metadata import version

    results = []
    for lang in LANGS:
        p = subprocess.run(
            [sys.executable, __file__, "--one", lang, "--runs", str(a.runs)], capture_output=True, text=True
        )
        if p.returncode:
            print(p.stderr, file=sys.stderr)
            raise SystemExit(f"{lang} failed")
        r = json.loads(p.stdout)
        r["version"] = version(lang)
        results.append(r)

    ref = results[1]["payloads"]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one core, {a.runs} evaluations per payload\n")
    print(
        f"{'language':16} {'version':8} {'payload':12} {'compile µs':>11} {'eval med µs':>12} {'eval p99 µs':>12}  same"
    )
    for r in results:
        for name, m in r["payloads"].items():
            same = "yes" if m["output"] == ref[name]["output"] else "DIFFERS"
            print(
                f"{r['lang']:16} {r['version']:8} {name:12} {m['compile_us']:11.1f} {m['eval_median_us']:12.1f} "
                f"{m['eval_p99_us']:12.1f}  {same}"
            )
    print(f"\n{'language':16} {'import RSS KiB':>15} {'RSS after runs KiB':>19} {'max RSS KiB':>12}")
    for r in results:
        print(f"{r['lang']:16} {r['import_rss_kib']:15} {r['rss_after_kib']:19} {r['maxrss_kib']:12}")
    print("\npayload sizes (bytes of JSON):", {n: m["bytes"] for n, m in ref.items()})
    for name in PAYLOADS:
        for r in results:
            if r["payloads"][name]["output"] != ref[name]["output"]:
                print(f"\n{r['lang']} {name} differs from jsonatapy:")
                print(json.dumps(r["payloads"][name]["output"], ensure_ascii=False))
                print(json.dumps(ref[name]["output"], ensure_ascii=False))
    print("\nexample output (jsonatapy, payment):\n" + json.dumps(ref["payment"]["output"], ensure_ascii=False))

    report: dict[str, Any] = {"results": results}
    if not a.no_probes:
        pr = probes()
        report["probes"] = pr
        print(f"\nsafety probes (child process, {PROBE_WALL:.0f} s wall limit, RLIMIT_AS {PROBE_AS >> 30} GiB)")
        for probe, row in pr.items():
            print(f"\n{probe}")
            for lang, o in row.items():
                extra = f" [stderr: {o['stderr']}]" if o.get("stderr") else ""
                print(f"  {lang:26} {o['outcome']:14} {o['seconds']:6.2f}s  {o['detail']}{extra}")
        ex = extra_checks()
        report["extra"] = ex
        print()
        for k, v in ex.items():
            print(f"{k}: {v}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
