#!/bin/sh
# Make a local certificate authority, a broker (server) certificate and client
# certificates for facewire's TLS listener (broker/secure.conf).
#
#   scripts/make-certs.sh OUT_DIR [CLIENT ...]
#
# OUT_DIR/ca.crt, ca.key          the CA (keep ca.key offline)
# OUT_DIR/server.crt, server.key  the broker; names in $SERVER_NAMES
#                                 (default: localhost 127.0.0.1), DNS or IP
# OUT_DIR/CLIENT.crt, CLIENT.key  one per client (node ids, service names)
#
# Clients: --broker mqtts://HOST:8883 --tls-ca OUT_DIR/ca.crt
#          --tls-cert OUT_DIR/NAME.crt --tls-key OUT_DIR/NAME.key
# An existing CA is reused, so clients can be added later.
set -eu

out=${1:?usage: make-certs.sh OUT_DIR [CLIENT ...]}
shift
days=${DAYS:-825}
names=${SERVER_NAMES:-localhost 127.0.0.1}
umask 077
mkdir -p "$out"

if [ ! -f "$out/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=facewire local CA" \
        -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi

san=""
for name in $names; do
    case $name in
        *[!0-9.]*) entry="DNS:$name" ;;
        *) entry="IP:$name" ;;
    esac
    san="${san:+$san,}$entry"
done

sign() { # sign NAME CN EXTENSIONS
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$out/$1.ext"
    openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
        -days "$days" -extfile "$out/$1.ext" -out "$out/$1.crt" 2>/dev/null
    rm -f "$out/$1.csr" "$out/$1.ext"
}

sign server "$(echo "$names" | cut -d' ' -f1)" "subjectAltName=$san
extendedKeyUsage=serverAuth"
for client in "$@"; do
    sign "$client" "$client" "extendedKeyUsage=clientAuth"
done
chmod 644 "$out/ca.crt" "$out"/*.crt
echo "certificates in $out: ca.crt server.crt${*:+ $(printf '%s.crt ' "$@")}"
