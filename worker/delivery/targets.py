"""What a new or changed subscription's target must pass before it is stored, beyond the model's
checks: TLS material that loads (a client certificate not expired, a key that belongs to it) and
callback/token URLs whose literal address the worker may go to. Shared by `outbox subscriptions`
and `outbox serve`; each fault is a `field: rule` line, never showing a key."""

from __future__ import annotations

from urllib.parse import urlsplit

from outbox import Subscription
from worker.delivery.safety import AddressPolicy
from worker.delivery.tls import check_pair, check_pem

_TLS_FIELDS = {"caBundle": "ca_bundle", "clientCert": "client_cert", "clientKey": "client_key"}


def target_problems(subscription: Subscription, policy: AddressPolicy) -> list[str]:
    """Every fault of the subscription's target, as `field: rule` lines (empty: fine)."""
    problems = []
    for field, text in (
        ("caBundle", subscription.ca_bundle),
        ("clientCert", subscription.client_cert),
        ("clientKey", subscription.client_key),
    ):
        if text is not None:
            problem = check_pem(_TLS_FIELDS[field], text)
            if problem is not None:
                problems.append(problem.replace(_TLS_FIELDS[field], field, 1))
    if not problems and subscription.client_cert and subscription.client_key:
        problem = check_pair(subscription.client_cert, subscription.client_key)
        if problem is not None:
            problems.append(problem.replace("client_key", "clientKey").replace("client_cert", "clientCert"))
    return problems + address_problems(subscription, policy)


def address_problems(subscription: Subscription, policy: AddressPolicy) -> list[str]:
    """A callback URL or token URL whose host is an address (or localhost) the worker would refuse:
    say so now, not at the first delivery. Names are checked when connecting (DNS may change)."""
    problems = []
    urls = [("callbackUrl", subscription.callback_url)]
    if subscription.oauth2 is not None:
        urls.append(("oauth2.tokenUrl", subscription.oauth2.token_url))
    for field, url in urls:
        host = urlsplit(url).hostname or ""
        address = "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host
        try:
            kind = policy.refusal(address)
        except ValueError:
            continue  # a name: checked at connect time
        if kind is not None:
            problems.append(
                f"{field}: {host} is a {kind} address, which deliveries may not go to; allow its network "
                "with OUTBOX_ALLOWED_NETWORKS (the worker must have the same setting)"
            )
    return problems
