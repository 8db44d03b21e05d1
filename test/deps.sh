#!/usr/bin/env bash
# Installs what dev and its tests need when it is missing and starts a
# Docker Engine when none answers: Debian's packages (apt-get, as root or
# through sudo). The README's two commands call it: `make example` as
# `deps.sh engine` (a Docker Engine, curl), `make test` with no argument
# (everything the tests use); .ci/run runs those two commands.
set -euo pipefail

mode="${1:-test}"
case "$mode" in
engine | test) ;;
*)
	echo "usage: $0 [engine|test]" >&2
	exit 2
	;;
esac

export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO=sudo
fi

apt_updated=0
apt_install() {
	if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
		log "missing: $*; install them as root (apt-get install $*), or run this as root"
		exit 1
	fi
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

docker_up() { docker info >/dev/null 2>&1; }

missing=()
# The README's example is checked with curl.
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "$mode" = test ]; then
	# Tools the build and the Docker Engine need.
	command -v make >/dev/null 2>&1 || missing+=(make)
	command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
	# The data path's tests read the kernel's rules back with nft (the agent
	# itself programs them over netlink and needs no nft).
	command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
	# The multi-host end-to-end tests build hosts from network namespaces (ip,
	# nsenter) and the overlay test serves HTTP with python3.
	command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
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
fi
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]}"
	apt_install "${missing[@]}"
fi

docker_denied() {
	local out
	out=$(docker info 2>&1) && return 1
	case "$out" in *"permission denied"*) return 0 ;; esac
	return 1
}
if ! docker_up && [ -S /var/run/docker.sock ] && docker_denied; then
	log "a Docker Engine runs, and $(id -un) may not use it: sudo usermod -aG docker $(id -un), then log in again (or run newgrp docker)"
	exit 1
fi
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

