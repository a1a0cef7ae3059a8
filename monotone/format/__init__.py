"""Pure byte formats: regions, partition index and footer, WAL records.

Nothing in this package opens a file or a segment; it turns numpy columns into
bytes and back, so it is fast to test and to fuzz.
"""
