#!/usr/bin/env bash
# A Python base image from Debian's packages, for machines that reach no container registry (the deployment
# tests and CI): mmdebstrap a minimal bookworm with python3 and libpq, then import it.
#   deploy/test/base-image.sh [TAG]        (default localhost/nlgov-outbox-testbase:bookworm; ENGINE=podman|docker)
set -euo pipefail
tag="${1:-localhost/nlgov-outbox-testbase:bookworm}"
engine="${ENGINE:-podman}"
command -v mmdebstrap >/dev/null || { echo "$0: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,libpq5 \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$work/base.tar" "$sources"
# PATH on import: any other --change ENV would leave the image without one.
"$engine" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$work/base.tar" "$tag" >/dev/null
echo "$tag"
