#!/usr/bin/env bash
# Self-check: every scenario in tests/sipp/ against a SIPp peer playing
# crossbar's part, on 127.0.0.1 (SIP ports 25060-25099, media 26000-26999).
# Each pair must exit 0 on both sides. Needs sipp (Debian: sip-tester).
set -u
cd "$(dirname "$0")/.."
PCAP=${PCAP:-/usr/share/sip-tester/g711a.pcap}
log=$(mktemp -d)
common=(-m 1 -i 127.0.0.1 -mi 127.0.0.1 -timeout 20s -timeout_error -nostdin -trace_err)
fail=0
# pair NAME SIPPORT_UAS SIPPORT_UAC UAS_SCENARIO UAC_SCENARIO [extra uac args...]
pair() {
    local name=$1 up=$2 cp=$3 uas=$4 uac=$5; shift 5
    (cd "$log" && sipp -sf "$OLDPWD/$uas" "${common[@]}" -p "$up" -mp $((26000 + up - 25000)) \
        >"$name.uas.out" 2>&1) & local pid=$!
    sleep 0.3
    (cd "$log" && sipp -sf "$OLDPWD/$uac" "${common[@]}" -s crossbar -p "$cp" -mp $((26000 + cp - 25000)) \
        "$@" "127.0.0.1:$up" >"$name.uac.out" 2>&1); local crc=$?
    wait "$pid"; local src=$?
    echo "$name: uac=$uac rc=$crc, uas=$uas rc=$src"
    [ "$crc" = 0 ] && [ "$src" = 0 ] || fail=1
}
pair answered 25061 25060 uas_answer.xml uac_answered.xml -key pcap "$PCAP"
pair wait_bye 25063 25062 uas_answer_bye.xml uac_wait_bye.xml
pair cancel   25065 25064 uas_ring_forever.xml uac_cancel.xml
pair hold     25067 25066 selfcheck/uas_hold_peer.xml uac_hold.xml
pair busy     25069 25068 uas_busy.xml selfcheck/uac_busy_peer.xml
pair options  25071 25070 selfcheck/uas_options_peer.xml uac_options.xml
[ "$fail" = 0 ] && echo "all passed" || echo "FAILED; logs in $log"
[ "$fail" = 0 ] && rm -rf "$log"
exit "$fail"
