"""Scheduled evidence sweeps: declared in annex.toml (config), run once (runner), run on their
cron schedules inside `annex serve` (scheduler)."""
