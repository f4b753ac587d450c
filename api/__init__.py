"""The shells around the other packages: settings, the `annex` CLI, and later the REST API."""
