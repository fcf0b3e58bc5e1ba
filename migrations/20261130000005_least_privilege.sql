-- Least privilege: the migrations run as the role that owns the schema
-- (EBOX_MIGRATION_DATABASE_URL); the workers, the API and the commands connect as a runtime
-- role (EBOX_DATABASE_URL) that owns nothing and is a member of the group role `ebox_runtime`
-- (`ebox migrate` grants it; docs/operations.md, "Database roles"). `ebox_runtime` may read and
-- write the working tables, but only read and add to the audit trail: no UPDATE, DELETE or
-- TRUNCATE on the `audit_…` tables, and, owning nothing, no ALTER, DROP or DISABLE TRIGGER.
--
-- RULE FOR EVERY LATER MIGRATION (run by the same owner role): the default privileges set at
-- the end of this file give `ebox_runtime` SELECT, INSERT, UPDATE and DELETE on each new table
-- and USAGE on each new sequence. A new audit table (named `audit_…`) must take back what the
-- runtime may not do, in the migration that creates it:
--
--     REVOKE UPDATE, DELETE, TRUNCATE ON audit_something FROM ebox_runtime;
--
-- and a table the services must not touch at all: REVOKE ALL ON it FROM ebox_runtime.
-- (tests/e2e/privileges.rs checks every `audit_…` table.)

-- Roles belong to the cluster, not to one database: the operator may have created it (the
-- migration role then needs no CREATEROLE), or another database migrated at the same moment
-- (the tests do) may create it between the check and the creation.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ebox_runtime') THEN
        CREATE ROLE ebox_runtime NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- The tables that exist now, whichever they are: the audit tables (`audit_events`, and
-- `audit_seals`, `audit_seal_members` when present) may be read and added to; the others read
-- and written. sqlx's own `_sqlx_migrations` is the owner's alone.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema()
          AND c.relkind IN ('r', 'p')
          AND c.relname <> '_sqlx_migrations'
    LOOP
        IF t.relname LIKE 'audit\_%' THEN
            EXECUTE format('REVOKE ALL ON %I FROM ebox_runtime', t.relname);
            EXECUTE format('GRANT SELECT, INSERT ON %I TO ebox_runtime', t.relname);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ebox_runtime', t.relname);
        END IF;
    END LOOP;
    -- nextval for serial keys and `event_sequence_nbr`; never setval (that needs UPDATE).
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO ebox_runtime', current_schema());
END $$;

-- What later migrations create (as this same role) follows, audit tables excepted: see the rule
-- above.
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ebox_runtime;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SEQUENCES TO ebox_runtime;
