-- An append without an expected version, as one statement (one round trip, its own
-- transaction): the usual case of a batch whose event ids are all new. An id already in the
-- stream makes the unique index refuse the statement; the store then appends the batch the
-- careful way (log.py: look the ids up under the stream's lock).
-- $1 stream id, $2..$9 the batch's columns (ids unique within the batch), $10 channel.
--
-- `lock` takes the stream's row first (appends to one stream take turns); the locked row is
-- read as it is now, so the batch gets the next sequences whatever the statement's snapshot.
WITH lock AS (
    SELECT st.next_seq, st.first_seq,
           (SELECT e.ts FROM {s}.events e WHERE e.stream_id = $1 AND e.seq >= st.first_seq
            ORDER BY e.seq LIMIT 1) AS oldest_ts
    FROM {s}.streams st WHERE st.id = $1 FOR UPDATE
), input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[],
                         $7::text[], $8::bytea[], $9::int[]) WITH ORDINALITY
        AS t(id, type, correlation_id, ts, data, content_type, headers, part, ord)
), ins AS (
    INSERT INTO {s}.events (stream_id, seq, id, type, correlation_id, ts, data, content_type,
                            headers, part)
    SELECT $1, (SELECT next_seq FROM lock) + ord - 1, id, type, correlation_id, ts, data,
           content_type, headers, part FROM input
    RETURNING correlation_id
), ver AS (
    INSERT INTO {s}.correlations (stream_id, correlation_id, version)
    SELECT $1, correlation_id, count(*) FROM ins GROUP BY correlation_id
    ON CONFLICT (stream_id, correlation_id)
    DO UPDATE SET version = correlations.version + excluded.version
), moved AS (
    UPDATE {s}.streams SET next_seq = next_seq + (SELECT count(*) FROM ins)
    WHERE id = $1 RETURNING pg_notify($10, $1::text)
)
SELECT next_seq, first_seq, oldest_ts, (SELECT count(*) FROM moved) FROM lock
