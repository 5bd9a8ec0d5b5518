#!/usr/bin/env bash
# Debian packages the tests use: sox (reference audio conversions), espeak-ng (a second voice),
# sip-tester (sipp) and baresip (real SIP peers), chromium (browser tests), mosquitto (MQTT broker),
# fonts-ipafont-gothic (Japanese glyphs in the browser tests' screenshots), kamailio (the SIP
# edge in front of several call nodes).
# Idempotent: installs only what is missing. Needs root (or sudo) on a fresh machine.
set -euo pipefail
pkgs=(sox espeak-ng sip-tester baresip chromium mosquitto fonts-ipafont-gothic kamailio)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
