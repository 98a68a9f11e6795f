#!/bin/sh
# Start mosquitto for the facewire docker compose stack (eclipse-mosquitto:2 image).
#
#   docker-start.sh           build the run files below, then exec mosquitto
#   docker-start.sh reload    rebuild the password and ACL files and SIGHUP the
#                             running mosquitto: it re-reads both and keeps its
#                             clients connected (after `facewire broker add-node`):
#     docker compose exec mosquitto sh /mosquitto/config/facewire/docker-start.sh reload
#
# broker/mosquitto.conf stays the one broker configuration. Its loopback
# development listener (1883 on 127.0.0.1) would block a network listener on
# the same port, so this script moves it to HEALTH_PORT (still loopback and
# anonymous, but under the ACL: an anonymous client may read only
# $SYS/broker/uptime, for the container's health check), appends
# broker/docker.conf (compose listener, TLS listener, passwords, ACL), builds
# the password file from the Docker secrets and copies the TLS certificates.
# The defaults are the container's paths; the tests run this same script with
# temporary ones.
set -eu

CONF_DIR=${CONF_DIR:-/mosquitto/config/facewire}
RUN_DIR=${RUN_DIR:-/tmp/facewire-broker}
DATA_DIR=${DATA_DIR:-/mosquitto/data}
SECRETS_DIR=${SECRETS_DIR:-/run/secrets}
CERTS_DIR=${CERTS_DIR:-/mosquitto/certs}
MQTT_PORT=${MQTT_PORT:-1883}
MQTTS_PORT=${MQTTS_PORT:-8883}
HEALTH_PORT=${HEALTH_PORT:-1880}
MQTT_USERNAME=${MQTT_USERNAME:-facewire}
RUN_USER=${RUN_USER:-mosquitto}
MOSQUITTO=${MOSQUITTO:-mosquitto}

umask 077
mkdir -p "$RUN_DIR"

first_line() { head -n 1 "$1" 2>/dev/null || true; }

# The accounts: the role accounts of broker/acl from their secrets (plain, hashed
# here), then the edge nodes of mqtt_edge_users (lines hashed by `facewire broker
# add-node` are kept as they are; 'node:password' lines are hashed here).
build_passwd() {
    password=$(first_line "$SECRETS_DIR/mqtt_password")
    if [ -z "$password" ]; then
        echo "docker-start: secret mqtt_password is missing or empty ($SECRETS_DIR/mqtt_password)" >&2
        exit 1
    fi
    printf '%s:%s\n' "$MQTT_USERNAME" "$password" > "$RUN_DIR/passwd.new"
    for role in classifier admin viewer homeassistant api frigate frigate_nvr; do
        password=$(first_line "$SECRETS_DIR/mqtt_${role}_password")
        [ -z "$password" ] || printf '%s:%s\n' "$role" "$password" >> "$RUN_DIR/passwd.new"
    done
    users="$SECRETS_DIR/mqtt_edge_users"
    if [ -s "$users" ]; then
        grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -e '^[^:]*:\$[67]\$' "$users" >> "$RUN_DIR/passwd.new" || true
    fi
    mosquitto_passwd -U "$RUN_DIR/passwd.new"
    if [ -s "$users" ]; then
        grep -e '^[^:]*:\$[67]\$' "$users" >> "$RUN_DIR/passwd.new" || true
    fi
    cp "$CONF_DIR/acl" "$RUN_DIR/acl.new"
    if [ "$(id -u)" = 0 ]; then
        chown "$RUN_USER" "$RUN_DIR/passwd.new" "$RUN_DIR/acl.new"
    fi
    mv "$RUN_DIR/passwd.new" "$RUN_DIR/passwd"
    mv "$RUN_DIR/acl.new" "$RUN_DIR/acl"
}

if [ "${1:-}" = reload ]; then
    build_passwd
    kill -HUP "$(cat "$RUN_DIR/mosquitto.pid")"
    echo "docker-start: accounts and ACL reloaded"
    exit 0
fi

build_passwd
# The LAN listener needs the certificates: without them it is left out (the
# compose listener stays, published on the host's loopback only).
tls=yes
mkdir -p "$RUN_DIR/certs"
for file in ca.crt server.crt server.key; do
    if [ -s "$CERTS_DIR/$file" ]; then
        cp "$CERTS_DIR/$file" "$RUN_DIR/certs/$file"
    else
        tls=no
    fi
done
if [ "$tls" = no ]; then
    echo "docker-start: no $CERTS_DIR/{ca.crt,server.crt,server.key}: no TLS listener for the LAN;" \
        "make them with scripts/make-certs.sh secrets/certs (docs/deployment.md)" >&2
fi

{
    echo "# Rendered by broker/docker-start.sh from mosquitto.conf + docker.conf: do not edit."
    echo "per_listener_settings true"
    echo "user $RUN_USER"
    sed -e "s|^listener 1883 127\.0\.0\.1\$|listener $HEALTH_PORT 127.0.0.1|" \
        -e "s|^persistence_location .*\$|persistence_location $DATA_DIR/|" \
        "$CONF_DIR/mosquitto.conf"
    # the health listener is mosquitto.conf's last section: this line applies to it
    echo "acl_file $RUN_DIR/acl"
    lan='/^# --- LAN listener/,$d'
    [ "$tls" = yes ] && lan='s|^listener 8883$|listener '"$MQTTS_PORT"'|'
    sed -e "s|^listener 1883\$|listener $MQTT_PORT|" \
        -e "$lan" \
        -e "s|@RUN_DIR@|$RUN_DIR|g" \
        "$CONF_DIR/docker.conf"
} > "$RUN_DIR/mosquitto.conf"

if ! grep -q "^listener $HEALTH_PORT 127.0.0.1\$" "$RUN_DIR/mosquitto.conf"; then
    echo "docker-start: mosquitto.conf has no 'listener 1883 127.0.0.1' development listener" >&2
    exit 1
fi

# Started as root, mosquitto drops to RUN_USER: let that user read its files.
if [ "$(id -u)" = 0 ]; then
    chown -R "$RUN_USER" "$RUN_DIR"
    mkdir -p "$DATA_DIR" && chown "$RUN_USER" "$DATA_DIR"
fi
echo $$ > "$RUN_DIR/mosquitto.pid"  # exec keeps this pid: the one `reload` signals
exec "$MOSQUITTO" -c "$RUN_DIR/mosquitto.conf"
