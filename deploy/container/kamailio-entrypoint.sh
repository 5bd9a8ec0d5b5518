#!/bin/sh
# Start the SIP edge from deploy/kamailio/kamailio.cfg as shipped: put this site's values
# into its four #!substdef lines (the same thing tests/test_kamailio_edge.py does), check
# the result, then run Kamailio in the foreground, logging to stderr.
#
#   EDGE_IP    address Kamailio listens on and record-routes (default: this host's first)
#   EDGE_PORT  SIP port (default 5060)
#   NODE_LIST  dispatcher list of call nodes (default /etc/kamailio/voicebot-nodes.list)
#   PBX_IP     the PBX's address: the only sender, besides the call nodes, that is relayed
#              (required: an edge open to anyone would put strangers through to the bot)
#   KAMAILIO_CFG  the shipped configuration (default /etc/kamailio/kamailio.cfg)
set -eu

cfg_in="${KAMAILIO_CFG:-/etc/kamailio/kamailio.cfg}"
edge_ip="${EDGE_IP:-$(hostname -i | cut -d' ' -f1)}"
edge_port="${EDGE_PORT:-5060}"
node_list="${NODE_LIST:-/etc/kamailio/voicebot-nodes.list}"
pbx_ip="${PBX_IP:?set PBX_IP to the PBX address whose calls the edge relays}"
run_dir="${KAMAILIO_RUN_DIR:-/tmp/kamailio}"

mkdir -p "$run_dir"
cfg="$run_dir/kamailio.cfg"
sed -e "s|^#!substdef \"!EDGE_IP!.*!g\"\$|#!substdef \"!EDGE_IP!${edge_ip}!g\"|" \
    -e "s|^#!substdef \"!EDGE_PORT!.*!g\"\$|#!substdef \"!EDGE_PORT!${edge_port}!g\"|" \
    -e "s|^#!substdef \"!NODE_LIST!.*!g\"\$|#!substdef \"!NODE_LIST!${node_list}!g\"|" \
    -e "s|^#!substdef \"!PBX_IP!.*!g\"\$|#!substdef \"!PBX_IP!${pbx_ip}!g\"|" \
    "$cfg_in" > "$cfg"
for name in EDGE_IP EDGE_PORT NODE_LIST PBX_IP; do
    if ! grep -q "^#!substdef \"!${name}!" "$cfg"; then
        echo "kamailio-entrypoint: no #!substdef line for ${name} in ${cfg_in}" >&2
        exit 64
    fi
done
echo "kamailio-entrypoint: edge ${edge_ip}:${edge_port}, call nodes from ${node_list}, PBX ${pbx_ip}" >&2
kamailio -c -f "$cfg" -Y "$run_dir"
# -DD: stay in the foreground (children still fork); -E: log to stderr, not syslog.
exec kamailio -DD -E -f "$cfg" -Y "$run_dir" -m "${KAMAILIO_SHM_MB:-64}" -M "${KAMAILIO_PKG_MB:-8}"
