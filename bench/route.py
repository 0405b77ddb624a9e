"""The router's matching cost: events × subscriptions with mixed filters, no database.

`worker.router.plan` as the daemon calls it: each event parsed from its JSON once, then matched against
every active subscription (types, kanalen with filters, and the Subscriptions API filters: exact, prefix,
suffix, all/any/not, CESQL, JSON Logic). Subscriptions are compiled once, as the worker does per
subscription version; the timed part is what a worker pays per pass.

    python bench/route.py                 # 10,000 events x 100 subscriptions, median of 5 runs
    python bench/route.py --events 2000 --subscriptions 50 --runs 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from outbox import CloudEvent, Subscription
from worker.daemon.router import plan

RESOURCES = ("zaak", "status", "resultaat", "rol", "zaakobject")
ACTIONS = ("create", "update", "destroy", "partial_update")


def make_events(n: int, rng: random.Random) -> list[tuple[int, str, datetime]]:
    rows = []
    for position in range(1, n + 1):
        kanaal = rng.choice(("zaken", "documenten", "besluiten"))
        event = CloudEvent(
            type=f"nl.overheid.{kanaal}.{rng.choice(RESOURCES)}.{rng.choice(ACTIONS)}",
            source=rng.choice(("urn:nld:oin:01823288444:openzaak", "urn:nld:oin:00000001234567890000:openklant")),
            subject=str(uuid.UUID(int=rng.getrandbits(128))),
            datacontenttype="application/json",
            data={
                "zaaktype": f"https://catalogi.example/zaaktypen/{rng.randrange(20)}",
                "bronorganisatie": str(rng.choice((123456782, 999990019))),
                "vertrouwelijkheidaanduiding": rng.choice(("openbaar", "zaakvertrouwelijk", "geheim")),
                "n": rng.randrange(100),
            },
            hop=rng.randrange(10),
        )
        rows.append((position, event.to_json(), datetime.now(UTC)))
    return rows


def subscription_specs(rng: random.Random) -> list[dict[str, Any]]:
    """One of each kind of interest, in rotation."""
    zaaktype = f"https://catalogi.example/zaaktypen/{rng.randrange(20)}"
    return [
        {"kanalen": [{"naam": "zaken", "filters": {"#resource": "zaak", "vertrouwelijkheidaanduiding": "openbaar"}}]},
        {"types": ["nl.overheid.zaken.*"]},
        {"types": ["*"], "filters": [{"exact": {"source": "urn:nld:oin:01823288444:openzaak"}}]},
        {"types": ["*"], "filters": [{"prefix": {"type": "nl.overheid.documenten."}}]},
        {"types": ["*"], "filters": [{"suffix": {"type": ".create"}}]},
        {
            "types": ["*"],
            "filters": [
                {"all": [{"prefix": {"type": "nl.overheid.zaken."}}, {"not": {"suffix": {"type": ".destroy"}}}]},
                {"any": [{"exact": {"hop": "1"}}, {"exact": {"hop": "2"}}]},
            ],
        },
        {"types": ["*"], "filters": [{"sql": "type LIKE 'nl.overheid.zaken.%' AND hop < 5"}]},
        {"types": ["*"], "filters": [{"sql": "source = 'urn:nld:oin:01823288444:openzaak' AND hop IN (1, 3, 5)"}]},
        {"types": ["*"], "filters": [{"jsonlogic": {"==": [{"var": "data.zaaktype"}, zaaktype]}}]},
        {
            "types": ["nl.overheid.zaken.*"],
            "filters": [{"jsonlogic": {"and": [{"<": [{"var": "data.n"}, 50]}, {"!=": [{"var": "hop"}, 0]}]}}],
        },
    ]


def make_subscriptions(n: int, rng: random.Random) -> list[Subscription]:
    subscriptions = []
    for index in range(n):
        spec = subscription_specs(rng)[index % 10]
        subscription = Subscription.create(callback_url=f"https://ontvanger{index}.example/hook", **spec)
        subscriptions.append(Subscription(**{**subscription.__dict__, "id": str(uuid.uuid4())}))
    return subscriptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rng = random.Random(20261129)
    rows = make_events(args.events, rng)
    subscriptions = make_subscriptions(args.subscriptions, rng)
    plan(rows[:200], subscriptions)  # warm-up
    times, routed = [], 0
    for run in range(args.runs):
        start = time.perf_counter()
        routes = plan(rows, subscriptions)
        times.append(time.perf_counter() - start)
        routed = len(routes.positions)
        print(f"  run {run + 1}/{args.runs}: {args.events / times[-1]:,.0f} events/s", file=sys.stderr)
    seconds = statistics.median(times)
    pairs = args.events * args.subscriptions
    print(f"{args.events:,} events x {args.subscriptions} subscriptions (mixed: kanalen, types, exact, prefix,")
    print("suffix, all/any/not, CESQL, JSON Logic), router.plan, median of", args.runs, "runs:")
    print(f"  {args.events / seconds:,.0f} events/s  ({seconds * 1e6 / pairs:.2f} µs per event x subscription)")
    print(f"  {routed:,} deliveries planned ({routed / args.events:.1f} per event)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
