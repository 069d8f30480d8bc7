#!/bin/sh
# Make tests/data/sipp-uac-pcap-g711a.pcap: one real SIPp call on loopback (uas + the built-in uac_pcap
# scenario, which plays the G.711 A-law RTP of the Debian sip-tester package's pcap/g711a.pcap),
# (and the RFC 2833 DTMF pcap it plays after it), captured with tcpdump on lo filtered to our ports. Needs root (tcpdump), sip-tester, tcpdump.
#   usage: tests/data/make_sipp_call.sh [OUT.pcap] [SIP_PORT_BASE]
set -u
OUT=$(realpath -m "${1:-$(dirname "$0")/sipp-uac-pcap-g711a.pcap}")
BASE=${2:-15060}
UAS_PORT=$BASE
UAC_PORT=$((BASE + 10))
UAS_MEDIA=$((BASE + 2000))   # the uas's SDP announces this media port
UAC_MEDIA=$((BASE + 3000))   # the uac plays RTP from this port
WORK=$(mktemp -d)
cleanup() {
    [ -n "${UAS_PID:-}" ] && kill "$UAS_PID" 2>/dev/null || true
    [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/pcap"
cp /usr/share/sip-tester/*.pcap "$WORK/pcap/"
cd "$WORK"
tcpdump -i lo -U -s 0 -w "$WORK/call.pcap" \
    "udp and (port $UAS_PORT or port $UAC_PORT or portrange $UAS_MEDIA-$((UAS_MEDIA + 3)) or portrange $UAC_MEDIA-$((UAC_MEDIA + 3)))" \
    >/dev/null 2>"$WORK/tcpdump.log" &
TCPDUMP_PID=$!
sleep 1
sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -mp "$UAS_MEDIA" -m 1 -nostdin -bg >/dev/null 2>&1 || true
UAS_PID=$(pgrep -n -f "sipp -sn uas -i 127.0.0.1 -p $UAS_PORT" || true)
sipp -sn uac_pcap "127.0.0.1:$UAS_PORT" -i 127.0.0.1 -p "$UAC_PORT" -mp "$UAC_MEDIA" -m 1 -nostdin \
    -timeout 60 >/dev/null 2>&1
sleep 1
kill "$TCPDUMP_PID"
wait "$TCPDUMP_PID" 2>/dev/null || true
TCPDUMP_PID=
cp "$WORK/call.pcap" "$OUT"
echo "$OUT: $(tshark -r "$OUT" 2>/dev/null | wc -l) frames"
