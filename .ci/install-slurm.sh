#!/usr/bin/env bash
# Install what the Slurm test tier needs: Debian's slurm-wlm (slurmctld, slurmd, client tools)
# and munge. The tests start their own private munged/slurmctld/slurmd (tests/cluster/slurmlocal.py);
# nothing here configures or starts a system-wide Slurm.
set -euo pipefail

need=(munged slurmctld slurmd sbatch squeue scancel)
missing=()
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "== slurm: already installed ($(dpkg-query -W -f '${Version}' slurmctld 2>/dev/null || echo unknown))"
    exit 0
fi
echo "== slurm: installing slurm-wlm and munge (missing: ${missing[*]})"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-slurm: need root or sudo to apt-get install" >&2; exit 1; }
    SUDO=(sudo)
fi

# Do not let the packages' maintainer scripts start system daemons during installation
# (the tests run their own on private ports); restore any existing policy afterwards.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
echo "== slurm: installed $(dpkg-query -W -f '${Version}' slurmctld)"
