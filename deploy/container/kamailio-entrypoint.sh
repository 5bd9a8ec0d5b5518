#!/bin/sh
# Start the SIP edge from deploy/kamailio/kamailio.cfg as shipped: put this site's values
# into its three #!substdef lines (the same thing tests/test_kamailio_edge.py does), check
# the result, then run Kamailio in the foreground, logging to stderr.
#
#   EDGE_IP    address Kamailio listens on and record-routes (default: this host's first)
#   EDGE_PORT  SIP port (default 5060)
#   NODE_LIST  dispatcher list of call nodes (default /etc/kamailio/voicebot-nodes.list)
#   KAMAILIO_CFG  the shipped configuration (default /etc/kamailio/kamailio.cfg)
set -eu

cfg_in="${KAMAILIO_CFG:-/etc/kamailio/kamailio.cfg}"
edge_ip="${EDGE_IP:-$(hostname -i | cut -d' ' -f1)}"
edge_port="${EDGE_PORT:-5060}"
node_list="${NODE_LIST:-/etc/kamailio/voicebot-nodes.list}"
run_dir="${KAMAILIO_RUN_DIR:-/tmp/kamailio}"

mkdir -p "$run_dir"
cfg="$run_dir/kamailio.cfg"
sed -e "s|^#!substdef \"!EDGE_IP!.*!g\"\$|#!substdef \"!EDGE_IP!${edge_ip}!g\"|" \
    -e "s|^#!substdef \"!EDGE_PORT!.*!g\"\$|#!substdef \"!EDGE_PORT!${edge_port}!g\"|" \
    -e "s|^#!substdef \"!NODE_LIST!.*!g\"\$|#!substdef \"!NODE_LIST!${node_list}!g\"|" \
    "$cfg_in" > "$cfg"
for name in EDGE_IP EDGE_PORT NODE_LIST; do
    if ! grep -q "^#!substdef \"!${name}!" "$cfg"; then
        echo "kamailio-entrypoint: no #!substdef line for ${name} in ${cfg_in}" >&2
        exit 64
    fi
done
echo "kamailio-entrypoint: edge ${edge_ip}:${edge_port}, call nodes from ${node_list}" >&2
kamailio -c -f "$cfg" -Y "$run_dir"
# -DD: stay in the foreground (children still fork); -E: log to stderr, not syslog.
exec kamailio -DD -E -f "$cfg" -Y "$run_dir" -m "${KAMAILIO_SHM_MB:-64}" -M "${KAMAILIO_PKG_MB:-8}"
