#!/usr/bin/env bash
# Installs what the tests need when it is missing and starts a Docker Engine
# when none answers: Debian's packages (apt-get, as root or through sudo).
# `make test` (the README's test command) and .ci/run both call this script,
# so a fresh machine and CI install the same things.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO=sudo
fi

apt_updated=0
apt_install() {
	if [ "$apt_updated" = 0 ]; then
		$SUDO apt-get update
		apt_updated=1
	fi
	$SUDO apt-get install -y "$@"
}

if ! command -v go >/dev/null 2>&1; then
	log "go not found on PATH (expected /usr/local/go/bin/go)"
	exit 1
fi

# Tools the build and the Docker Engine need.
missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
# The data path's tests read the kernel's rules back with nft (the agent
# itself programs them over netlink and needs no nft).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# The multi-host end-to-end tests build hosts from network namespaces (ip,
# nsenter) and the overlay test serves HTTP with python3.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The dashboard test drives Debian's Chromium headless (chromedp).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# `dev init` starters are tested on stand-in base images built from this
# host's own programs (no registry here): busybox for a shell, nginx, redis,
# node and Debian's python.
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
[ -x /usr/bin/python3.11 ] || missing+=(python3.11)
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]}"
	apt_install "${missing[@]}"
fi

docker_up() { docker info >/dev/null 2>&1; }

if ! docker_up; then
	if ! command -v dockerd >/dev/null 2>&1; then
		log "installing docker.io"
		apt_install docker.io
	fi
	# The package's postinst may have started the daemon already.
	if ! docker_up; then
		log "starting dockerd (log: /var/log/dockerd.log)"
		$SUDO sh -c "dockerd >/var/log/dockerd.log 2>&1 </dev/null &"
		for _ in $(seq 1 60); do
			docker_up && break
			sleep 1
		done
		if ! docker_up; then
			log "dockerd did not answer within 60s; last lines of /var/log/dockerd.log:"
			tail -n 50 /var/log/dockerd.log >&2 || true
			exit 1
		fi
	fi
fi

