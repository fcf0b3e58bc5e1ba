# Run by every Deployment's init container (wait-for-schema.yaml): waits until the schema has
# the migration this release needs, so that a pod of a new release never starts on an old
# schema (k8s/README.md, "Upgrade"). The migrate Job marks the schema once `ebox migrate` has
# succeeded (mark-schema.sh); the runtime role reads that mark, not sqlx's table, which is the
# owner's alone.
set -u
url=$(cat /run/secrets/ebox/EBOX_DATABASE_URL)
want=$(cat /etc/ebox-schema/version)
query="SELECT coalesce(substring(obj_description(to_regclass('_sqlx_migrations'), 'pg_class')
  FROM 'migrations applied ([0-9]+)')::bigint, 0) >= $want"
until [ "$(psql "$url" -XAtq -c "$query")" = t ]; do
  echo "waiting for the migrate Job to apply migration $want"
  sleep 5
done
echo "the schema has migration $want"
