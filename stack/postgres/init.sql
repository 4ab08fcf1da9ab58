-- Roles and databases of the stack, run as the PostgreSQL superuser.
-- Idempotent: stack/stack.sh runs it on every `up` (psql, via the stack's own
-- socket); docker-compose.kafka.yml mounts it into /docker-entrypoint-initdb.d.
--   allocation / allocation  owns database allocation  (the service)
--   apicurio   / apicurio    owns database apicurio    (schema registry storage)
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r, r)
  FROM unnest(ARRAY['allocation', 'apicurio']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

-- keep the passwords known even if a role pre-existed with another one
-- CREATEDB lets the test suite work in a throwaway database of its own.
ALTER ROLE allocation WITH LOGIN NOSUPERUSER CREATEDB PASSWORD 'allocation';
ALTER ROLE apicurio WITH LOGIN NOSUPERUSER PASSWORD 'apicurio';

SELECT format('CREATE DATABASE %I OWNER %I', d, d)
  FROM unnest(ARRAY['allocation', 'apicurio']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
\gexec
