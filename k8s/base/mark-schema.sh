# Run by the migrate Job after `ebox migrate` (migrate.yaml), as the owner of the tables:
# marks the schema with its newest migration, in a comment on sqlx's own table that any role
# may read. The Deployments' pods wait for this mark (wait-for-schema.sh).
set -eu
psql "$(cat /run/secrets/ebox/EBOX_MIGRATION_DATABASE_URL)" -Xq -v ON_ERROR_STOP=1 -c "
DO \$\$ BEGIN
  EXECUTE format('COMMENT ON TABLE _sqlx_migrations IS %L', 'ebox: migrations applied '
    || (SELECT max(version) FROM _sqlx_migrations WHERE success));
END \$\$;"
echo "schema marked"
