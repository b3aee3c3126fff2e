#!/usr/bin/env bash
# Installs Rampart as the systemd service in deploy/rampart.service: the `rampart` system
# user, the binary, /etc/rampart/rampart.toml and one credential file per secret, generated
# by `rampart init --secure`. Never overwrites an existing configuration or secret.
# Usage (as root): deploy/install-systemd.sh PATH/TO/rampart
# scripts/check-deploy runs this script and then the unit under a real systemd.
set -euo pipefail
bin=${1:?usage: $0 PATH/TO/rampart}
unit="$(dirname "$0")/rampart.service"
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

getent passwd rampart >/dev/null ||
    useradd --system --user-group --no-create-home --home-dir /var/lib/rampart \
        --shell /usr/sbin/nologin rampart
install -m 0755 "$bin" /usr/local/bin/rampart
install -d -m 0755 /etc/rampart
# Read by systemd (root) only; the service sees copies in its credentials directory.
install -d -m 0700 /etc/rampart/credentials

if [ -e /etc/rampart/rampart.toml ]; then
    echo "/etc/rampart/rampart.toml exists: configuration and credentials left as they are"
else
    for f in encryption-key admin-password webhook-secret; do
        if [ -e "/etc/rampart/credentials/$f" ]; then
            echo "/etc/rampart/credentials/$f exists but rampart.toml does not; refusing" >&2
            exit 1
        fi
    done
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    /usr/local/bin/rampart init --secure --dir "$scratch" --data-dir /var/lib/rampart >/dev/null
    # The secrets become systemd credentials, so the config names no secrets file.
    grep -v '^secrets_file' "$scratch/rampart.toml" >"$scratch/rampart.toml.unit"
    install -m 0640 -o root -g rampart "$scratch/rampart.toml.unit" /etc/rampart/rampart.toml
    # One file per secret (the unit's LoadCredential= lines). The admin username is the
    # default, `admin`.
    while IFS= read -r line; do
        case ${line%%=*} in
            RAMPART_ENCRYPTION_KEY) file=encryption-key ;;
            RAMPART_ADMIN_PASSWORD) file=admin-password ;;
            RAMPART_BREACH_WEBHOOK_SECRET) file=webhook-secret ;;
            *) continue ;;
        esac
        (umask 077 && printf '%s\n' "${line#*=}" >"/etc/rampart/credentials/$file")
    done <"$scratch/.secrets"
    echo "wrote /etc/rampart/rampart.toml and /etc/rampart/credentials/{encryption-key,admin-password,webhook-secret}"
    echo "the first admin is 'admin' with the password in /etc/rampart/credentials/admin-password"
fi

install -m 0644 "$unit" /etc/systemd/system/rampart.service
# Only where systemd is the running init (not in a container build, say).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "start it with: systemctl enable --now rampart"
