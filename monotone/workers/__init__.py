"""The coordinator process and the work it does on a repository's files."""
