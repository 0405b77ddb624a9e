"""Per-subscription TLS: a custom CA bundle and a client certificate (mTLS) for one receiver.

`tls_context` builds an `ssl.SSLContext` for the transport (`request.extensions["outbox.tls"]`).
Verification is always on. A custom CA bundle replaces Mozilla's (as `requests`' verify=path does):
a receiver with a private CA should not also be trusted on a public CA's word. Contexts are cached
by a hash of their PEM text, so every distinct configuration builds one context, and the
transport's pool (keyed by context) keeps one subscription's client certificate to itself.

`check_pem` validates one field for `subscriptions add`. Messages name the field, never its text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import tempfile
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import certifi

if TYPE_CHECKING:
    from cryptography import x509

FIELDS = ("ca_bundle", "client_cert", "client_key")
_CACHE_SIZE = 256

_cache: OrderedDict[bytes, ssl.SSLContext] = OrderedDict()
_lock = threading.Lock()


def _certificates(text: str) -> list[x509.Certificate]:
    from cryptography import x509  # the PEM checks are the CLI's: the worker starts without them

    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return []


def _format_problem(field: str, text: str) -> str | None:
    """What is wrong with the PEM text of `field` as such (None: nothing)."""
    if field not in FIELDS:
        raise ValueError(f"unknown TLS field {field!r}")
    has_key = "PRIVATE KEY-----" in text
    if field == "client_key":
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        if "ENCRYPTED" in text:
            return "client_key: is protected by a passphrase; give the key without one (it is stored encrypted)"
        try:
            serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return "client_key: not a PEM private key (-----BEGIN PRIVATE KEY-----)"
        return None
    if has_key:  # a key pasted into a certificate field would be stored unencrypted
        if field == "ca_bundle":
            return "ca_bundle: holds a private key; give only the CA certificates"
        return "client_cert: holds a private key; give the key as client_key"
    if not _certificates(text):
        return f"{field}: not PEM certificates (-----BEGIN CERTIFICATE-----)"
    if field == "ca_bundle":
        try:
            ssl.create_default_context(cadata=text)
        except (ssl.SSLError, ValueError):
            return "ca_bundle: not usable as CA certificates"
    return None


def check_pem(field: str, text: str, now: datetime | None = None) -> str | None:
    """A readable problem with one field ("ca_bundle", "client_cert", "client_key"), or None.

    Beyond the format, a client certificate must not have expired.
    """
    problem = _format_problem(field, text)
    if problem is None and field == "client_cert":
        expires = _certificates(text)[0].not_valid_after_utc
        if expires < (now or datetime.now(UTC)):
            return f"client_cert: expired on {expires:%Y-%m-%d}"
    return problem


def check_pair(client_cert_pem: str, client_key_pem: str) -> str | None:
    """Whether the key belongs to the certificate (both already pass `check_pem`)."""
    from cryptography.hazmat.primitives import serialization

    certificate = _certificates(client_cert_pem)[0]
    key = serialization.load_pem_private_key(client_key_pem.encode(), password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    if certificate.public_key().public_bytes(serialization.Encoding.DER, spki) != ours:
        return "client_key: does not belong to client_cert"
    return None


def _digest(*parts: str | None) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        if part is None:
            digest.update(b"-")
        else:
            data = part.encode()
            digest.update(b"+%d:" % len(data) + data)
    return digest.digest()


def _scratch_parent() -> str | None:
    """Memory-backed /dev/shm when there is one, so the key is never written to a disk."""
    shm = "/dev/shm"  # noqa: S108 - a private 0700 folder is made inside it
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _write_private(path: str, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def _load_client_certificate(context: ssl.SSLContext, certificate: str, key: str) -> None:
    """`load_cert_chain` reads files only: the PEM text lives in a private folder for the call."""
    folder = tempfile.mkdtemp(prefix="outbox-tls-", dir=_scratch_parent())
    try:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        _write_private(cert_path, certificate)
        _write_private(key_path, key)
        context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    except ssl.SSLError:
        raise ValueError("client_key: does not belong to client_cert") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _build(ca_bundle: str | None, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    for field, text in zip(FIELDS, (ca_bundle, client_cert, client_key), strict=True):
        if text is not None:
            problem = _format_problem(field, text)
            if problem is not None:
                raise ValueError(problem)
    if client_key is not None and client_cert is None:
        raise ValueError("client_key: given without client_cert")
    if client_cert is not None and client_key is None:
        raise ValueError("client_key: missing; client_cert needs its private key")
    if ca_bundle is not None:
        context = ssl.create_default_context(cadata=ca_bundle)
    else:
        context = ssl.create_default_context(cafile=certifi.where())
    if client_cert is not None and client_key is not None:
        mismatch = check_pair(client_cert, client_key)
        if mismatch is not None:
            raise ValueError(mismatch)
        _load_client_certificate(context, client_cert, client_key)
    # create_default_context already verifies; said again so no later edit can loosen it quietly.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def tls_context(
    ca_bundle_pem: str | None = None, client_cert_pem: str | None = None, client_key_pem: str | None = None
) -> ssl.SSLContext:
    """The SSL context for one subscription's TLS settings; the same settings give the same object.

    Blank fields count as not given. Raises ValueError naming the field that is wrong.
    """
    fields = tuple(text if text and text.strip() else None for text in (ca_bundle_pem, client_cert_pem, client_key_pem))
    key = _digest(*fields)
    with _lock:
        context = _cache.get(key)
        if context is not None:
            _cache.move_to_end(key)
            return context
    context = _build(*fields)
    with _lock:
        context = _cache.setdefault(key, context)  # another thread may have built it meanwhile
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return context


def clear_cache() -> None:
    with _lock:
        _cache.clear()
