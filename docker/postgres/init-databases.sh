#!/usr/bin/env bash
# Creates one login role and one database for each of Prefect and MLflow, each database owned by its role
# and closed to everyone else. The postgres image runs it once, on the first start with an empty data
# volume, from /docker-entrypoint-initdb.d/ (there psql reaches the server through its Unix socket);
# tests/integration/test_docker_stack.py runs the same file against a native server with PGHOST/PGPORT set.
#
# Reads: POSTGRES_USER (the superuser), PREFECT_DB_NAME, PREFECT_DB_USER, PREFECT_DB_PASSWORD,
#        MLFLOW_DB_NAME, MLFLOW_DB_USER, MLFLOW_DB_PASSWORD.
# Safe to run again: existing roles get their password reset, existing databases are kept.
set -euo pipefail

: "${POSTGRES_USER:?}"
: "${PREFECT_DB_NAME:?}" "${PREFECT_DB_USER:?}" "${PREFECT_DB_PASSWORD:?set PREFECT_DB_PASSWORD}"
: "${MLFLOW_DB_NAME:?}" "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"

as_superuser() {  # as_superuser DATABASE [psql options...] < script
    local database=$1
    shift
    psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$database" "$@"
}

create_database() {  # create_database NAME OWNER PASSWORD
    # psql's :'var' and :"var" quote values as literals and identifiers, so no value can inject SQL.
    as_superuser postgres --set=db="$1" --set=owner="$2" --set=password="$3" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'owner', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L', :'db', :'owner', 'UTF8')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'db', :'owner') \gexec
SQL
    echo "init-databases: database $1 owned by $2"
}

create_database "$PREFECT_DB_NAME" "$PREFECT_DB_USER" "$PREFECT_DB_PASSWORD"
create_database "$MLFLOW_DB_NAME" "$MLFLOW_DB_USER" "$MLFLOW_DB_PASSWORD"

# Prefect's migrations create pg_trgm; creating it here as the superuser does not depend on the
# extension being trusted or on what the prefect role may do.
as_superuser "$PREFECT_DB_NAME" -c 'CREATE EXTENSION IF NOT EXISTS pg_trgm'
