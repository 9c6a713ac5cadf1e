# workload: sqlite
# command: sqlite3 /tmp/bench.db, one process per transaction: UPDATE BATCH random rows, INSERT BATCH new rows, DELETE the BATCH oldest (WAL journal)
# param: sqlite_rows 40000 rows kept in the table
# param: sqlite_row_bytes 400 bytes of random blob per row
# param: sqlite_batch 200 rows updated, inserted and deleted per transaction
# packages: sqlite3
# programs: /usr/bin/sqlite3
# memory: An embedded database on the guest's RAM file system: random B-tree pages rewritten by updates, a sliding window of appended and freed pages, and a write-ahead log rewritten from its start after each checkpoint, all in the page cache.
# min_mem_mib: 128
rows=$(mw_int sqlite_rows 40000)
row_bytes=$(mw_int sqlite_row_bytes 400)
batch=$(mw_int sqlite_batch 200)
db=/tmp/bench.db
rm -f "$db" "$db-wal" "$db-shm"
out=$(sqlite3 "$db" "PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);
CREATE INDEX t_k ON t(k);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $rows)
INSERT INTO t SELECT i, abs(random()) % 1000000, randomblob($row_bytes) FROM c;" 2>&1) \
  || mw_fail "cannot create $db: $out"
echo 0 > /tmp/sqlite.done
sqlite_progress() {
  n=$(cat /tmp/sqlite.done)
  echo "transactions=$n rows_written=$((n * batch * 2)) db=$(( $(wc -c < "$db") / 1024 )) KiB wal=$(( $(wc -c < "$db-wal" 2>/dev/null || echo 0) / 1024 )) KiB"
}
mw_ready "rows=$rows row_bytes=$row_bytes batch=$batch"
mw_progress sqlite_progress
n=0
first=1
while :; do
  # Rows first..first+rows-1 are live; update random ones, append a batch, drop the oldest.
  out=$(sqlite3 "$db" "BEGIN;
UPDATE t SET k = abs(random()) % 1000000, v = randomblob($row_bytes)
  WHERE id IN (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $batch)
               SELECT $first + abs(random()) % $rows FROM c);
WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < $batch - 1)
INSERT INTO t SELECT $first + $rows + i, abs(random()) % 1000000, randomblob($row_bytes) FROM c;
DELETE FROM t WHERE id < $first + $batch;
COMMIT;" 2>&1) || mw_fail "transaction $n failed: $out"
  first=$((first + batch))
  n=$((n + 1))
  echo "$n" > /tmp/sqlite.done
done
