"""The database: engines and sessions, typed models, computed columns, migrations, history and companies."""
