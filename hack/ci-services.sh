#!/bin/bash
# ci-services.sh install|up|down|status|kill-glance|start-glance
#
# A real OpenStack Glance (and Keystone, and with NOVA=1 Nova) from Debian
# 12's packages, on 127.0.0.1 only, as plain background processes (no
# systemd), with sqlite and a file store kept in one state directory. Used
# by tests/glance and CI:
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
#   NOVA         1: also Nova (api, conductor, scheduler, one compute host with
#                Nova's fake virt driver), Placement, Neutron (ML2, no agents)
#                and RabbitMQ; needs GLANCE_AUTH=keystone. Ports NOVA_PORT
#                (8774), PL_PORT (8778), NET_PORT (9696), MQ_PORT (5672) and
#                MQ_DIST_PORT (RabbitMQ's node-to-node port, MQ_PORT+1). Flavors
#                m1.tiny (1 GiB disk) and m1.small (20 GiB disk).
#
# What the fake driver proves and does not: Nova's API, scheduler (its
# filters against the image's properties and the flavor), conductor and a
# compute host take the Glance image through a whole server life cycle
# (BUILD, ACTIVE or ERROR, console output, delete). No guest runs: the
# image's data is never read, and the console output is the driver's fixed
# text ("FAKE CONSOLE OUTPUT ... LAST LINE"), not a guest's. QEMU under
# libvirt would boot it, but here only TCG works and a boot takes minutes.
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
NOVA=${NOVA:-0}
NOVA_PORT=${NOVA_PORT:-8774}
PL_PORT=${PL_PORT:-8778}
NET_PORT=${NET_PORT:-9696}
MQ_PORT=${MQ_PORT:-5672}
MQ_DIST_PORT=${MQ_DIST_PORT:-$((MQ_PORT + 1))}
if [ "${1:-}" != up ] && [ -s "$SVC/mode" ]; then
    read -r AUTH GL_PORT KS_PORT NOVA NOVA_PORT PL_PORT NET_PORT MQ_PORT MQ_DIST_PORT <"$SVC/mode"
    NOVA=${NOVA:-0}
fi
KS=http://127.0.0.1:$KS_PORT
GL=http://127.0.0.1:$GL_PORT
NV=http://127.0.0.1:$NOVA_PORT/v2.1
PL=http://127.0.0.1:$PL_PORT
NET=http://127.0.0.1:$NET_PORT
if [ "$NOVA" = 1 ] && [ "$AUTH" != keystone ]; then
    echo "ci-services: NOVA=1 needs GLANCE_AUTH=keystone (Nova has no unauthenticated mode here)" >&2
    exit 2
fi

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
    [ "$NOVA" = 1 ] && nova_packages
    return 0
}

# Nova's services (nova-api brings the API's eventlet server; nova-compute
# runs from python3-nova, as Debian's nova-compute package would pull in
# libvirt for a hypervisor the fake driver does not use), Placement,
# Neutron's server (Nova asks it for the ports of every server it deletes)
# and RabbitMQ for their RPC.
nova_packages() {
    echo rabbitmq-server python3-nova nova-common nova-api nova-conductor nova-scheduler python3-placement neutron-common
}

install() {
    local missing=() p
    # install also brings Nova's packages for the keystone setup, so that
    # a later NOVA=1 up finds them.
    for p in $(packages) $([ "$AUTH" = keystone ] && nova_packages); do
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

# ks_token: an admin token of the project admin.
ks_token() {
    curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$KS/v3/auth/tokens" -d \
        '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"adminpw"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}' |
        awk -F': ' 'tolower($1)=="x-subject-token"{print $2}' | tr -d '\r'
}

# rabbit_start: a RabbitMQ node of its own (name, ports, data, cookie under
# $SVC/rabbit), listening on 127.0.0.1 only.
rabbit_env() {
    local d=$SVC/rabbit
    export HOME=$d/home RABBITMQ_NODENAME=builder-ci-$MQ_PORT@localhost
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$MQ_PORT RABBITMQ_DIST_PORT=$MQ_DIST_PORT
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log
    export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins RABBITMQ_CONFIG_FILE=$d/rabbitmq RABBITMQ_PID_FILE=$d/beam.pid
}

rabbit_start() {
    local d=$SVC/rabbit i
    mkdir -p "$d/home" "$d/mnesia" "$d/log"
    echo '[].' >"$d/enabled_plugins"
    : >"$d/rabbitmq.conf"
    (
        rabbit_env
        setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$d/log/stdout.log" 2>&1 </dev/null &
        echo $! >"$d/pid"
        for i in $(seq 1 120); do
            /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$RABBITMQ_NODENAME" await_startup -t 1 >/dev/null 2>&1 && exit 0
            kill -0 "$(cat "$d/pid")" 2>/dev/null || break
            sleep 0.5
        done
        log "rabbitmq did not start; its log:"
        tail -n 40 "$d/log/stdout.log" >&2
        exit 1
    )
}

# keystone_authtoken for a service user USER (password USERpw).
authtoken() {
    cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = ${1}pw
region_name = RegionOne
service_token_roles_required = true
EOF
}

# service_auth SECTION USER: a [SECTION] with USER's credentials, for one
# service calling another.
service_auth() {
    cat <<EOF
[$1]
auth_type = password
auth_url = $KS/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = ${2}pw
region_name = RegionOne
EOF
}

nova_config() {
    local d=$SVC/nova p=$SVC/placement n=$SVC/neutron
    mkdir -p "$d/log" "$d/state" "$d/lock" "$d/instances" "$p/log" "$n/log" "$n/lock"
    cat >"$d/nova.conf" <<EOF
[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:$MQ_PORT/
compute_driver = fake.FakeDriver
host = builder-ci
my_ip = 127.0.0.1
state_path = $d/state
instances_path = $d/instances
log_dir = $d/log
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = $NOVA_PORT
osapi_compute_workers = 1
# The compute host reports its resources as it starts (so a fresh cloud
# schedules within seconds), then once a minute: every write is one more
# chance of SQLite's "database is locked" for a server's own updates.
update_resources_interval = 60
heal_instance_info_cache_interval = -1
graceful_shutdown_timeout = 5
# A loaded CI machine (2 cores, builds and boots beside) answers slowly.
rpc_response_timeout = 180
[api]
auth_strategy = keystone
[conductor]
workers = 1
[scheduler]
workers = 1
# SQLite: several services write the same files; a writer waits up to a
# minute for another's transaction (Python's default, 5 s, is too short on
# a loaded machine: "database is locked" fails a server's build).
[api_database]
connection = sqlite:///$d/nova_api.sqlite?timeout=60
sqlite_synchronous = false
[database]
connection = sqlite:///$d/nova.sqlite?timeout=60
sqlite_synchronous = false
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[oslo_concurrency]
lock_path = $d/lock
[vnc]
enabled = false
[glance]
region_name = RegionOne
[cinder]
os_region_name = RegionOne
[oslo_messaging_notifications]
driver = noop
$(authtoken nova)
$(service_auth placement placement)
$(service_auth neutron neutron)
EOF
    cat >"$p/placement.conf" <<EOF
[DEFAULT]
log_dir = $p/log
[api]
auth_strategy = keystone
[placement_database]
connection = sqlite:///$p/placement.sqlite?timeout=60
sqlite_synchronous = false
$(authtoken placement)
EOF
    cat >"$n/neutron.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $NET_PORT
core_plugin = ml2
# The router plugin (no L3 agent runs) loads the models Neutron's port
# listing joins; without it, listing ports fails.
service_plugins = router
auth_strategy = keystone
transport_url = rabbit://guest:guest@127.0.0.1:$MQ_PORT/
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
graceful_shutdown_timeout = 5
log_dir = $n/log
state_path = $n
[database]
connection = sqlite:///$n/neutron.sqlite?timeout=60
sqlite_synchronous = false
[oslo_concurrency]
lock_path = $n/lock
[ml2]
type_drivers = flat,local
tenant_network_types = local
mechanism_drivers =
extension_drivers =
[oslo_messaging_notifications]
driver = noop
$(authtoken neutron)
$(service_auth nova nova)
EOF
}

# nova_db: the schemas (no Keystone needed: runs while Keystone starts).
nova_db() {
    local d=$SVC/nova p=$SVC/placement n=$SVC/neutron
    local M="nova-manage --config-file $d/nova.conf"
    (
        $M api_db sync &&
            $M cell_v2 map_cell0 --database_connection "sqlite:///$d/nova_cell0.sqlite?timeout=60" &&
            $M cell_v2 create_cell --name cell1 &&
            $M db sync
    ) >"$d/log/db_sync.log" 2>&1 &
    local npid=$!
    placement-manage --config-file "$p/placement.conf" db sync >"$p/log/db_sync.log" 2>&1 &
    local ppid=$!
    # Neutron's migrations alter constraints, which SQLite cannot: the
    # schema is made from its models instead, as its own unit tests do on
    # SQLite.
    /usr/bin/python3 -c 'import sys, sqlalchemy
from neutron.db.migration.models import head
head.get_metadata().create_all(sqlalchemy.create_engine(sys.argv[1]))' "sqlite:///$n/neutron.sqlite" >"$n/log/db_sync.log" 2>&1 &
    local qpid=$!
    local ok=0
    wait $npid || { log "nova db sync failed:"; tail -n 30 "$d/log/db_sync.log" >&2; ok=1; }
    wait $ppid || { log "placement db sync failed:"; tail -n 30 "$p/log/db_sync.log" >&2; ok=1; }
    wait $qpid || { log "neutron db sync failed:"; tail -n 30 "$n/log/db_sync.log" >&2; ok=1; }
    local f
    for f in "$d"/*.sqlite "$p"/*.sqlite "$n"/*.sqlite; do
        [ -e "$f" ] && sqlite3 "$f" 'PRAGMA journal_mode=WAL;' >/dev/null
    done
    return $ok
}

# nova_keystone: service users and catalog entries (compute, placement,
# network), once Keystone is up.
nova_keystone() {
    local T svc admin service u s i
    T=$(ks_token)
    api() { curl -sf -X "$1" "$KS/v3/$2" -H "X-Auth-Token: $T" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
    svc=$(api GET 'projects?name=service' | jq -r '.projects[0].id')
    admin=$(api GET 'roles?name=admin' | jq -r '.roles[0].id')
    # Nova passes its own token as a service token along with the user's;
    # the others accept it only from a user with the service role.
    service=$(api POST roles '{"role":{"name":"service"}}' | jq -r .role.id)
    for u in nova placement neutron; do
        u=$(api POST users "{\"user\":{\"name\":\"$u\",\"password\":\"${u}pw\",\"domain_id\":\"default\",\"default_project_id\":\"$svc\"}}" | jq -r .user.id)
        api PUT "projects/$svc/users/$u/roles/$admin"
        api PUT "projects/$svc/users/$u/roles/$service"
    done
    for s in compute:nova:$NV placement:placement:$PL network:neutron:$NET; do
        IFS=: read -r type name url <<<"$s"
        url=${s#*:*:}
        i=$(api POST services "{\"service\":{\"type\":\"$type\",\"name\":\"$name\"}}" | jq -r .service.id)
        for iface in public internal; do
            api POST endpoints "{\"endpoint\":{\"service_id\":\"$i\",\"interface\":\"$iface\",\"region_id\":\"RegionOne\",\"url\":\"$url\"}}" >/dev/null
        done
    done
}

# nova_procs starts the services but the scheduler. They need no Keystone
# to start (they ask it at their first request), so they start while
# Keystone does: most of their start is Python importing. The compute host
# retries its report to Placement until Keystone and Placement answer.
# nova-scheduler does not: it looks Placement up in the catalog as it
# starts and exits when Keystone answers without it (nova_scheduler_start).
nova_procs() {
    local d=$SVC/nova p=$SVC/placement n=$SVC/neutron s
    OS_PLACEMENT_CONFIG_DIR=$p setsid uwsgi --plugin python3 \
        --http-socket 127.0.0.1:$PL_PORT --wsgi-file /usr/bin/placement-api \
        --master --processes 1 --threads 2 --lazy-apps --need-app --die-on-term \
        --buffer-size 65535 --add-header 'Connection: close' \
        --logto "$p/log/uwsgi.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$p/pid"
    setsid neutron-server --config-file "$n/neutron.conf" >>"$n/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$n/pid"
    for s in api conductor; do
        setsid "nova-$s" --config-file "$d/nova.conf" >>"$d/log/$s-stdout.log" 2>&1 </dev/null &
        echo $! >"$d/$s.pid"
    done
    nova_compute_start
}

# nova_compute_start starts the compute host. It looks Placement up in
# the catalog as it starts: when Keystone answers before the catalog has
# Placement, it exits (EndpointNotFound), and nova_ready starts it again.
nova_compute_start() {
    local d=$SVC/nova
    setsid /usr/bin/python3 -c 'import sys; from nova.cmd.compute import main; sys.argv[0] = "nova-compute"; sys.exit(main())' \
        --config-file "$d/nova.conf" --log-file "$d/log/nova-compute.log" >>"$d/log/compute-stdout.log" 2>&1 </dev/null &
    echo $! >"$d/compute.pid"
}

# nova_scheduler_start, once the catalog has Placement (see nova_procs).
nova_scheduler_start() {
    local d=$SVC/nova
    setsid nova-scheduler --config-file "$d/nova.conf" >>"$d/log/scheduler-stdout.log" 2>&1 </dev/null &
    echo $! >"$d/scheduler.pid"
}

# nova_ready waits until a server can be scheduled, once Keystone has the
# services' users and catalog.
nova_ready() {
    local d=$SVC/nova p=$SVC/placement n=$SVC/neutron
    wait_http "$PL/" 120 placement "$(cat "$p/pid")"
    wait_http "$NET/" 120 neutron-server "$(cat "$n/pid")"
    wait_http "http://127.0.0.1:$NOVA_PORT/" 120 nova-api "$(cat "$d/api.pid")"
    log "up: placement, neutron and nova-api answer"
    local T
    T=$(ks_token)
    # Neutron 21 lists ports with a relationship its models only get once
    # any query has configured them: the first port listing (Nova's, when
    # it deletes a server) would fail with an AttributeError. One network
    # listing sets them up.
    curl -sf -o /dev/null "$NET/v2.0/networks" -H "X-Auth-Token: $T"
    # Flavors: m1.tiny fits small images; nothing is larger than
    # m1.small's 20 GiB, so an image with min_disk 21 fits no flavor.
    local f
    for f in '"m1.tiny","ram":512,"vcpus":1,"disk":1,"id":"1"' '"m1.small","ram":2048,"vcpus":1,"disk":20,"id":"2"'; do
        curl -sf -X POST "$NV/flavors" -H "X-Auth-Token: $T" -H 'Content-Type: application/json' \
            -d "{\"flavor\":{\"name\":$f}}" >/dev/null
    done

    # Ready when a server can be placed: the host's resources are in
    # Placement (the compute node exists then) and the host is mapped to
    # its cell. The scheduler's periodic discovery cannot do the mapping
    # (its interval is read before the configuration is), so it is done
    # here.
    local i ready='' restarted=''
    for i in $(seq 1 600); do
        if curl -sf "$PL/resource_providers?name=builder-ci&resources=VCPU:1" -H "X-Auth-Token: $T" \
            -H 'OpenStack-API-Version: placement 1.4' | jq -e '.resource_providers | length == 1' >/dev/null 2>&1; then
            ready=1
            break
        fi
        if ! kill -0 "$(cat "$d/compute.pid")" 2>/dev/null; then
            # Exited at its start, before the catalog had Placement (which
            # it has now): once more, then its logs.
            [ -z "$restarted" ] && grep -q "EndpointNotFound" "$d/log/nova-compute.log" 2>/dev/null || break
            log "nova-compute exited before Keystone's catalog had Placement: started again"
            restarted=1
            nova_compute_start
        fi
        sleep 0.2
    done
    if [ -n "$ready" ]; then
        nova-manage --config-file "$d/nova.conf" cell_v2 discover_hosts --verbose >"$d/log/discover.log" 2>&1 || ready=
        grep -q "host 'builder-ci'" "$d/log/discover.log" || ready=
    fi
    if [ -z "$ready" ]; then
        log "the compute host did not become schedulable; its logs:"
        tail -n 40 "$d/log/"*compute* "$d/log/discover.log" >&2
        return 1
    fi
    # A server is only scheduled once the scheduler and the conductor
    # report in (else its build times out in the conductor's RPC call).
    local svc
    for svc in nova-scheduler nova-conductor; do
        ready=
        for i in $(seq 1 600); do
            if curl -sf "$NV/os-services?binary=$svc" -H "X-Auth-Token: $T" |
                jq -e '[.services[] | select(.state == "up")] | length >= 1' >/dev/null 2>&1; then
                ready=1
                break
            fi
            kill -0 "$(cat "$d/${svc#nova-}.pid")" 2>/dev/null || break
            sleep 0.2
        done
        if [ -z "$ready" ]; then
            log "$svc did not report in; its log:"
            tail -n 40 "$d/log/$svc.log" >&2
            return 1
        fi
    done
    log "up: the compute host is schedulable"
}

nova_stop() {
    # In parallel: each may take seconds to drain.
    local f
    for f in nova/compute.pid nova/api.pid nova/conductor.pid nova/scheduler.pid neutron/pid placement/pid rabbit/pid; do
        stop "$SVC/$f" TERM &
    done
    wait
    # epmd, Erlang's port mapper, is started by the first node and shared
    # by all: stop it only when no node is left registered with it.
    if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q '^name '; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

up() {
    need_installed
    mkdir -p "$SVC"
    if alive "$SVC/glance/pid"; then
        log "up: services are running already in $SVC"
        return 0
    fi
    local t0=$SECONDS kpid= mqpid= dbpid=
    echo "$AUTH $GL_PORT $KS_PORT $NOVA $NOVA_PORT $PL_PORT $NET_PORT $MQ_PORT $MQ_DIST_PORT" >"$SVC/mode"
    # glance-api talks to keystone only when the first request arrives: set
    # both up at the same time.
    if [ "$AUTH" = keystone ]; then
        keystone_up >"$SVC/keystone-up.log" 2>&1 &
        kpid=$!
    fi
    if [ "$NOVA" = 1 ]; then
        # RabbitMQ and the schemas need no Keystone: meanwhile.
        nova_config
        rabbit_start >"$SVC/rabbit-up.log" 2>&1 &
        mqpid=$!
        (nova_db && nova_procs) >"$SVC/nova-db.log" 2>&1 &
        dbpid=$!
    fi
    glance_config
    glance_start
    if [ -n "$kpid" ] && ! wait $kpid; then
        cat "$SVC/keystone-up.log" >&2
        exit 1
    fi
    if [ "$NOVA" = 1 ]; then
        log "up: glance and keystone after $((SECONDS - t0)) s"
        wait $mqpid || { cat "$SVC/rabbit-up.log" >&2; exit 1; }
        wait $dbpid || { cat "$SVC/nova-db.log" >&2; exit 1; }
        log "up: rabbitmq, the nova, placement and neutron schemas, their services started after $((SECONDS - t0)) s"
        nova_keystone
        nova_scheduler_start
        nova_ready
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
    log "up: $AUTH services in $SVC after $((SECONDS - t0)) s (glance $GL${kpid:+, keystone $KS}$([ "$NOVA" = 1 ] && echo ", nova $NV"))"
}

down() {
    [ "$NOVA" = 1 ] && nova_stop
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
    if [ "$NOVA" = 1 ]; then
        local f
        for f in rabbit/pid placement/pid neutron/pid nova/api.pid nova/conductor.pid nova/scheduler.pid nova/compute.pid; do
            if alive "$SVC/$f"; then echo "${f%.pid} pid $(cat "$SVC/$f")"; else echo "${f%.pid} down"; ok=1; fi
        done
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
