#!/usr/bin/env bash
# scripts/tls-relay.sh: the TLS side of a test relay, for scripts/run.sh and scripts/bench-e2e.sh.
#
#   scripts/tls-relay.sh DIR RELAY_IP TLS_PORT UPSTREAM_PORT PROTOCOLS [EXTRA_IP]
#
# Writes into DIR (made empty first) a test CA (ca.pem, ca.key), a certificate it signed for
# relay.test and RELAY_IP (cert.pem, key.pem), and nginx.conf: one nginx process, no daemon,
# terminating TLS (PROTOCOLS, e.g. "TLSv1.2 TLSv1.3") on RELAY_IP:TLS_PORT and passing each
# request once to the plain relay on RELAY_IP:UPSTREAM_PORT over a keep-alive upstream (also on
# EXTRA_IP:TLS_PORT when given, for a second link into the relay's namespace). Start it
# where RELAY_IP lives: `nginx -c DIR/nginx.conf -p DIR`. A lane that trusts DIR/ca.pem
# reaches it with `host = "relay.test"`, `tls = true`.
set -euo pipefail
[ $# -eq 5 ] || [ $# -eq 6 ] || {
    echo "usage: $0 DIR RELAY_IP TLS_PORT UPSTREAM_PORT PROTOCOLS [EXTRA_IP]" >&2
    exit 2
}
dir=$1 ip=$2 tls_port=$3 upstream_port=$4 protocols=$5 extra_ip=${6:-}
extra_listen=""
extra_san=""
if [ -n "$extra_ip" ]; then
    extra_listen="listen $extra_ip:$tls_port ssl;"
    extra_san=",IP:$extra_ip"
fi

rm -rf "$dir"
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=swqos test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=relay.test" \
    -keyout "$dir/key.pem" -out "$dir/req.pem" 2>/dev/null
printf 'subjectAltName=DNS:relay.test,IP:%s%s\n' "$ip" "$extra_san" >"$dir/san.ext"
openssl x509 -req -in "$dir/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/san.ext" -out "$dir/cert.pem" 2>/dev/null

cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir;
    proxy_temp_path $dir;
    upstream relay { server $ip:$upstream_port; keepalive 32; }
    server {
        listen $ip:$tls_port ssl;
        $extra_listen
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        ssl_protocols $protocols;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://relay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_next_upstream off;
        }
    }
}
EOF
