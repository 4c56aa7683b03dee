#!/bin/bash
# ci-services.sh install|up|down|status|kill-glance|start-glance
#
# A real OpenStack Glance (and Keystone) from Debian 12's packages, on
# 127.0.0.1 only, as plain background processes (no systemd), with sqlite
# and a file store kept in one state directory. Used by tests/glance and CI:
#
#   hack/ci-services.sh install                 # root; apt-installs only what is missing
#   SVC_DIR=$(mktemp -d) GLANCE_AUTH=noauth hack/ci-services.sh up
#   . $SVC_DIR/noauth-openrc                    # or admin-openrc / builder-openrc, clouds.yaml
#   hack/ci-services.sh down                    # stops everything, removes SVC_DIR
#
# Environment:
#   SVC_DIR      state directory (default ${TMPDIR:-/tmp}/builder-ci-svc); down removes it
#   GLANCE_AUTH  keystone (default) or noauth
#   GL_PORT      Glance port (default 9292); KS_PORT Keystone port (default 35357)
#
# kill-glance (SIGKILL, as a crash) and start-glance (same config and data)
# exist for tests that take Glance away in the middle of a publish.
#
# Recipes and the reasons behind each setting: shared/docs/services-on-loopback.md.
set -euo pipefail

SVC=${SVC_DIR:-${TMPDIR:-/tmp}/builder-ci-svc}
AUTH=${GLANCE_AUTH:-keystone}
GL_PORT=${GL_PORT:-9292}
KS_PORT=${KS_PORT:-35357}
# Later commands (down, kill-glance, start-glance) use what up was given.
if [ "${1:-}" != up ] && [ -s "$SVC/mode" ]; then read -r AUTH GL_PORT KS_PORT <"$SVC/mode"; fi
KS=http://127.0.0.1:$KS_PORT
GL=http://127.0.0.1:$GL_PORT

case $AUTH in keystone | noauth) ;; *)
    echo "ci-services: GLANCE_AUTH=$AUTH: use keystone or noauth" >&2
    exit 2
    ;;
esac

log() { echo "ci-services: $*" >&2; }

# wait_http URL SECONDS NAME [PID]: poll until URL answers 2xx; give up early
# when PID died, and show the service's log either way on failure.
wait_http() {
    local i
    for i in $(seq 1 $(($2 * 5))); do
        curl -sf -o /dev/null "$1" && return 0
        if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then break; fi
        sleep 0.2
    done
    log "$3 did not come up at $1; its logs:"
    tail -n 40 "$SVC"/*/log/* >&2 || true
    return 1
}

# Packages: glance-api and keystone run the services, uwsgi serves keystone
# (its Debian package no longer ships a standalone server), sqlite3/curl/jq
# are used by this script.
packages() {
    echo glance-api sqlite3 curl jq
    [ "$AUTH" = keystone ] && echo keystone uwsgi-core uwsgi-plugin-python3
    return 0
}

install() {
    local missing=() p
    for p in $(packages); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "install: everything is installed already"
        return 0
    fi
    [ "$(id -u)" = 0 ] || { log "install: needs root to apt-get install ${missing[*]}"; exit 1; }
    # Keep postinst scripts from starting the packaged daemons on 0.0.0.0.
    local mine=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        mine=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "install: ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
    if [ -n "$mine" ]; then rm -f /usr/sbin/policy-rc.d; fi
}

need_installed() {
    local p
    for p in $(packages); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            { log "$p is not installed: run $0 install (as root) first"; exit 1; }
    done
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

keystone_up() {
    local d=$SVC/keystone
    mkdir -p "$d/log" "$d/fernet-keys" "$d/credential-keys"
    cat >"$d/keystone.conf" <<EOF
[DEFAULT]
log_file = $d/log/keystone.log
[database]
connection = sqlite:///$d/keystone.sqlite
[token]
provider = fernet
expiration = 14400
[fernet_tokens]
key_repository = $d/fernet-keys
[fernet_receipts]
key_repository = $d/fernet-keys
[credential]
key_repository = $d/credential-keys
[identity]
password_hash_rounds = 4
EOF
    local K="keystone-manage --config-file $d/keystone.conf"
    # The key repository needs no database: make it while the schema is built
    # (each keystone-manage call is mostly Python start-up time).
    $K fernet_setup --keystone-user root --keystone-group root >"$d/log/fernet_setup.log" 2>&1 &
    local fpid=$!
    $K db_sync >"$d/log/db_sync.log" 2>&1
    # WAL: without it uwsgi's open read transactions make writes fail with
    # "database is locked".
    sqlite3 "$d/keystone.sqlite" 'PRAGMA journal_mode=WAL;' >/dev/null
    $K bootstrap --bootstrap-password adminpw --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "$KS/v3/" --bootstrap-internal-url "$KS/v3/" \
        --bootstrap-public-url "$KS/v3/" >"$d/log/bootstrap.log" 2>&1
    wait $fpid
    # Connection: close, because python clients trip over uwsgi's handling
    # of kept-alive connections on --http-socket.
    OS_KEYSTONE_CONFIG_FILES=$d/keystone.conf setsid uwsgi --plugin python3 \
        --http-socket 127.0.0.1:$KS_PORT --wsgi-file /usr/bin/keystone-wsgi-public \
        --master --processes 1 --threads 4 --lazy-apps --need-app --die-on-term \
        --buffer-size 65535 --add-header 'Connection: close' \
        --logto "$d/log/uwsgi.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$d/pid"
    wait_http "$KS/v3" 120 keystone "$(cat "$d/pid")"

    # Users and catalog: glance (service), builder (member of project
    # "builds") and admin (admin of project "admin", password adminpw).
    local T
    T=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$KS/v3/auth/tokens" -d \
        '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"adminpw"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}' |
        awk -F': ' 'tolower($1)=="x-subject-token"{print $2}' | tr -d '\r')
    api() { curl -sf -X "$1" "$KS/v3/$2" -H "X-Auth-Token: $T" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
    role() { api GET "roles?name=$1" | jq -r '.roles[0].id'; }
    local admin member reader svc glance bld builder img r i
    admin=$(role admin)
    member=$(role member)
    reader=$(role reader)
    svc=$(api POST projects '{"project":{"name":"service","domain_id":"default"}}' | jq -r .project.id)
    glance=$(api POST users "{\"user\":{\"name\":\"glance\",\"password\":\"glancepw\",\"domain_id\":\"default\",\"default_project_id\":\"$svc\"}}" | jq -r .user.id)
    api PUT "projects/$svc/users/$glance/roles/$admin"
    bld=$(api POST projects '{"project":{"name":"builds","domain_id":"default"}}' | jq -r .project.id)
    builder=$(api POST users "{\"user\":{\"name\":\"builder\",\"password\":\"builderpw\",\"domain_id\":\"default\",\"default_project_id\":\"$bld\"}}" | jq -r .user.id)
    for r in $member $reader; do api PUT "projects/$bld/users/$builder/roles/$r"; done
    img=$(api POST services '{"service":{"type":"image","name":"glance"}}' | jq -r .service.id)
    for i in public internal; do
        api POST endpoints "{\"endpoint\":{\"service_id\":\"$img\",\"interface\":\"$i\",\"region_id\":\"RegionOne\",\"url\":\"$GL\"}}" >/dev/null
    done
    cat >"$SVC/admin-openrc" <<EOF
export OS_AUTH_URL=$KS/v3 OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne OS_INTERFACE=public
export OS_USERNAME=admin OS_PASSWORD=adminpw OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
EOF
    sed 's/=admin OS_PASSWORD=adminpw OS_PROJECT_NAME=admin/=builder OS_PASSWORD=builderpw OS_PROJECT_NAME=builds/' \
        "$SVC/admin-openrc" >"$SVC/builder-openrc"
    local c
    {
        echo "clouds:"
        for c in admin:adminpw:admin builder:builderpw:builds; do
            IFS=: read -r u p pr <<<"$c"
            cat <<EOF
  ci-$u:
    auth:
      auth_url: $KS/v3
      username: $u
      password: $p
      project_name: $pr
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
EOF
        done
    } >"$SVC/clouds.yaml"
}

glance_config() {
    local d=$SVC/glance flavor=
    mkdir -p "$d/log" "$d/images" "$d/staging" "$d/tasks" "$d/lock"
    cp /etc/glance/glance-api-paste.ini "$d/"
    [ "$AUTH" = keystone ] && flavor=keystone
    cat >"$d/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GL_PORT
workers = 1
log_file = $d/log/glance-api.log
enabled_backends = fs:file
[database]
connection = sqlite:///$d/glance.sqlite
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $d/images
[os_glance_staging_store]
filesystem_store_datadir = $d/staging
[os_glance_tasks_store]
filesystem_store_datadir = $d/tasks
[oslo_concurrency]
lock_path = $d/lock
[paste_deploy]
flavor = $flavor
config_file = $d/glance-api-paste.ini
[oslo_policy]
policy_file = $d/policy.yaml
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = glancepw
region_name = RegionOne
EOF
    if [ "$AUTH" = noauth ]; then
        # The unauthenticated context has no roles: allow what needs admin.
        printf '"publicize_image": ""\n"communitize_image": ""\n' >"$d/policy.yaml"
    else
        echo '{}' >"$d/policy.yaml"
    fi
    glance-manage --config-file "$d/glance-api.conf" db_sync >"$d/log/db_sync.log" 2>&1
    sqlite3 "$d/glance.sqlite" 'PRAGMA journal_mode=WAL;' >/dev/null
}

glance_start() {
    local d=$SVC/glance
    if alive "$d/pid"; then log "glance-api is running already (pid $(cat "$d/pid"))"; return 0; fi
    # Not a process group leader here (no job control), so setsid does not
    # fork: $! is glance-api itself, leader of its own group for kill -- -pid.
    setsid glance-api --config-file "$d/glance-api.conf" >>"$d/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pid"
    wait_http "$GL/healthcheck" 120 glance-api "$(cat "$d/pid")"
}

# stop PIDFILE SIGNAL: signal the process group, wait for it to go (glance
# drains for a few seconds on TERM), then KILL what is left.
stop() {
    local f=$1 p i
    [ -s "$f" ] || return 0
    p=$(cat "$f")
    kill "-$2" -- "-$p" 2>/dev/null || kill "-$2" "$p" 2>/dev/null || true
    for i in $(seq 1 75); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL -- "-$p" 2>/dev/null || true
    # the group may outlive its leader for a moment (glance's worker)
    for i in $(seq 1 25); do
        pgrep -g "$p" >/dev/null 2>&1 || break
        sleep 0.2
    done
    rm -f "$f"
}

up() {
    need_installed
    mkdir -p "$SVC"
    if alive "$SVC/glance/pid"; then
        log "up: services are running already in $SVC"
        return 0
    fi
    local t0=$SECONDS kpid=
    echo "$AUTH $GL_PORT $KS_PORT" >"$SVC/mode"
    # glance-api talks to keystone only when the first request arrives: set
    # both up at the same time.
    if [ "$AUTH" = keystone ]; then
        keystone_up >"$SVC/keystone-up.log" 2>&1 &
        kpid=$!
    fi
    glance_config
    glance_start
    if [ -n "$kpid" ] && ! wait $kpid; then
        cat "$SVC/keystone-up.log" >&2
        exit 1
    fi
    if [ "$AUTH" = noauth ]; then
        # OS_AUTH_TYPE=none is what builder reads; the token and the dummy
        # OS_AUTH_URL keep python-glanceclient working too (it caches its
        # schema where it never reads it back without an auth URL).
        cat >"$SVC/noauth-openrc" <<EOF
export OS_AUTH_TYPE=none OS_IMAGE_URL=$GL
export OS_AUTH_TOKEN=noauth OS_AUTH_URL=http://127.0.0.1:1/noauth
EOF
    fi
    log "up: $AUTH services in $SVC after $((SECONDS - t0)) s (glance $GL${kpid:+, keystone $KS})"
}

down() {
    stop "$SVC/glance/pid" TERM
    stop "$SVC/keystone/pid" TERM
    case $SVC in / | "") ;; *) rm -rf "$SVC" ;; esac
    log "down: stopped and removed $SVC"
}

status() {
    local ok=0
    if alive "$SVC/glance/pid"; then echo "glance-api pid $(cat "$SVC/glance/pid") $GL"; else echo "glance-api down"; ok=1; fi
    if [ "$AUTH" = keystone ]; then
        if alive "$SVC/keystone/pid"; then echo "keystone pid $(cat "$SVC/keystone/pid") $KS"; else echo "keystone down"; ok=1; fi
    fi
    return $ok
}

case ${1:-} in
install) install ;;
up) up ;;
down) down ;;
status) status ;;
kill-glance) stop "$SVC/glance/pid" KILL ;;
start-glance) glance_start ;;
*)
    echo "usage: $0 install|up|down|status|kill-glance|start-glance" >&2
    exit 2
    ;;
esac
