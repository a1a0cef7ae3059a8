"""The write-ahead log: records (the bytes), writer (one file per writer, appended and
synced), files (reading, repair, garbage collection) and replay (records back in lsn order)."""
