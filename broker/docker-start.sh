#!/bin/sh
# Start mosquitto for the facewire docker compose stack (eclipse-mosquitto:2 image).
#
# broker/mosquitto.conf stays the one broker configuration. Its loopback
# development listener (1883 on 127.0.0.1) would block a network listener on
# the same port, so this script moves it to HEALTH_PORT (still loopback and
# anonymous: only the container's own health check can reach it), appends
# broker/docker.conf (network listener, passwords, ACL) and builds the password
# file from the Docker secrets. The defaults are the container's paths; the
# tests run this same script with temporary ones.
set -eu

CONF_DIR=${CONF_DIR:-/mosquitto/config/facewire}
RUN_DIR=${RUN_DIR:-/tmp/facewire-broker}
DATA_DIR=${DATA_DIR:-/mosquitto/data}
SECRETS_DIR=${SECRETS_DIR:-/run/secrets}
MQTT_PORT=${MQTT_PORT:-1883}
HEALTH_PORT=${HEALTH_PORT:-1880}
MQTT_USERNAME=${MQTT_USERNAME:-facewire}
RUN_USER=${RUN_USER:-mosquitto}
MOSQUITTO=${MOSQUITTO:-mosquitto}

umask 077
mkdir -p "$RUN_DIR"

password=$(head -n 1 "$SECRETS_DIR/mqtt_password" 2>/dev/null || true)
if [ -z "$password" ]; then
    echo "docker-start: secret mqtt_password is missing or empty ($SECRETS_DIR/mqtt_password)" >&2
    exit 1
fi
printf '%s:%s\n' "$MQTT_USERNAME" "$password" > "$RUN_DIR/passwd"
if [ -s "$SECRETS_DIR/mqtt_edge_users" ]; then
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$SECRETS_DIR/mqtt_edge_users" >> "$RUN_DIR/passwd" || true
fi
mosquitto_passwd -U "$RUN_DIR/passwd"
cp "$CONF_DIR/acl" "$RUN_DIR/acl"

{
    echo "# Rendered by broker/docker-start.sh from mosquitto.conf + docker.conf: do not edit."
    echo "per_listener_settings true"
    echo "user $RUN_USER"
    sed -e "s|^listener 1883 127\.0\.0\.1\$|listener $HEALTH_PORT 127.0.0.1|" \
        -e "s|^persistence_location .*\$|persistence_location $DATA_DIR/|" \
        "$CONF_DIR/mosquitto.conf"
    sed -e "s|^listener 1883\$|listener $MQTT_PORT|" \
        -e "s|@RUN_DIR@|$RUN_DIR|" \
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
exec "$MOSQUITTO" -c "$RUN_DIR/mosquitto.conf"
