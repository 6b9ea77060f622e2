"""synth: merged GitHub pull requests -> long-horizon coding tasks, curated in DuckDB."""

__version__ = "0.1.0"
