"""Command-line tools: the monotone admin command and the benchmark."""
