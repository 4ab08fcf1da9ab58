-- Roles and databases of the stack, run as the PostgreSQL superuser.
-- Idempotent: stack/stack.sh runs it on every `up` (psql, via the stack's own
-- socket); docker-compose.kafka.yml mounts it into /docker-entrypoint-initdb.d.
--   allocation_owner / allocation_owner  owns database allocation and its tables; runs the
--                                         migrations (MIGRATION_DATABASE_URL); CREATEDB, so
--                                         the test suite can work in throwaway databases
--   allocation       / allocation        the service (DATABASE_URL): owns nothing, no
--                                         CREATEDB; `allocation db upgrade` grants it
--                                         SELECT/INSERT/UPDATE/DELETE on the tables
--   apicurio         / apicurio          owns database apicurio (schema registry storage)
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r, r)
  FROM unnest(ARRAY['allocation_owner', 'allocation', 'apicurio']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

-- keep the passwords known even if a role pre-existed with another one
ALTER ROLE allocation_owner WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE PASSWORD 'allocation_owner';
ALTER ROLE allocation WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'allocation';
ALTER ROLE apicurio WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'apicurio';

-- The owner may end the service's sessions: the tests drop their throwaway databases
-- WITH (FORCE) while a crashed process's connections may linger. It gives the owner no
-- privilege it lacks: the service's role holds less than the owner already does.
GRANT allocation TO allocation_owner;

SELECT format('CREATE DATABASE %I OWNER %I', d, o)
  FROM (VALUES ('allocation', 'allocation_owner'), ('apicurio', 'apicurio')) AS t (d, o)
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
\gexec

-- A stack made before the owner role existed: hand the database and what the service's role
-- created in it (its tables, from migrations it ran) to the owner. Grants come back with the
-- next `allocation db upgrade` (make run: `allocation prepare`).
ALTER DATABASE allocation OWNER TO allocation_owner;
\connect allocation
REASSIGN OWNED BY allocation TO allocation_owner;
