# Sourced by .ci/run and scripts/security-report: makes sure PostgreSQL and Redis run on
# loopback (installing them from Debian's packages where missing) and exports the production
# profile's environment for the tests. Chromium too, for the browser tests.
export DEBIAN_FRONTEND=noninteractive

apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then apt-get update -qq; apt_ready=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "$what did not come up within $seconds s" >&2
  return 1
}

start_services() {
  # PostgreSQL
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    local version
    version=$(ls /etc/postgresql | sort -n | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  wait_until 60 PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
  as_postgres() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
  [ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'hub'")" = 1 ] ||
    as_postgres -c "CREATE ROLE hub LOGIN PASSWORD 'hub' CREATEDB"
  [ "$(as_postgres -c "SELECT 1 FROM pg_database WHERE datname = 'hub'")" = 1 ] ||
    as_postgres -c "CREATE DATABASE hub OWNER hub"

  # Chromium, for the browser tests (Debian's; Playwright drives it and downloads no browser)
  command -v chromium >/dev/null || apt_install chromium
  # Prometheus and promtool, for the metrics tests (a real server scrapes the hub). The tests
  # start their own S3 server (moto) and OpenID Connect provider from the Python packages.
  command -v prometheus >/dev/null || apt_install prometheus

  # Redis
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    # Append-only persistence, as the production topology runs it (README): queued jobs survive
    # a restart of Redis. (The hub also sends again what the broker lost; see dispatch.py.)
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly yes \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_until 30 Redis redis-cli -h 127.0.0.1 -p 6379 ping

  export DATABASE_URL=postgres://hub:hub@127.0.0.1:5432/hub
  export REDIS_URL=redis://127.0.0.1:6379/0
  export HUB_REQUIRE_SERVICES=1
}
