#!/bin/sh
# Initialises a throw-away SoftHSM2 token for tests and benchmarks.
#   tests/softhsm/init.sh DIR [LABEL] [PIN] [SO_PIN]
# Creates DIR/softhsm2.conf (tokens in DIR/tokens) and a token LABEL (default boveda-test,
# PIN 1234, SO PIN 5678). Use it with: SOFTHSM2_CONF=DIR/softhsm2.conf
# BOVEDA_KEYSTORE=pkcs11 BOVEDA_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
# BOVEDA_PKCS11_TOKEN=LABEL BOVEDA_PKCS11_PIN=PIN.
set -eu
dir=${1:?usage: init.sh DIR [LABEL] [PIN] [SO_PIN]}
label=${2:-boveda-test}
pin=${3:-1234}
so_pin=${4:-5678}
mkdir -p "$dir/tokens"
chmod 700 "$dir" "$dir/tokens"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
CONF
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" --pin "$pin" \
    --so-pin "$so_pin" >/dev/null
echo "$dir/softhsm2.conf"
