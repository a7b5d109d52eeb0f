"""PostgreSQL access: schema and migrations, connection pools, named queries, error translation."""
