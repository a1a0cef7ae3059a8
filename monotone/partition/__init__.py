"""A partition file and everything that reads or writes one: fileformat (header, index,
footer), writer and reader (regions), files (names and states, local and cloud), merge (a
file's regions merged with memtable rows, for cursors and refresh) and merger (a refresh:
file and memtable rows into a new file)."""
