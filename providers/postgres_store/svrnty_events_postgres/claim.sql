-- One claim of a delivery group, as one statement (one round trip, its own transaction).
-- $1 group id, $2 stream id, $3 max count, $4 consumer, $5 visibility timeout (seconds),
-- $6 the reason of a redelivery after a visibility timeout, $7 the claim's token (chosen by
-- the host: a claim whose reply was lost is found by it); {match}: the claim filter's
-- conditions on `e` (parameters from $8 on).
--
-- `g` locks the group's row first (claims of one group take turns; the lock order of every
-- statement is group row, then batches, then pending rows); the locked row is read as it is
-- now, whatever the statement's snapshot. `x` detaches the group's batches past their
-- deadline into pending rows (skipping those an ack holds); when it found any, this claim
-- takes nothing and says so (the rows it wrote are not visible to this statement): the store
-- claims again at once, and finds them in sequence order with the rest. `c` takes due pending
-- rows (released, nacked and due, in flight past their deadline) and skips those an ack or
-- nack holds; `new` reads events past the cursor through the filter's index, handed over as
-- one batches row. The cursor moves past what `new` read, or to the end of the stream as this
-- statement's snapshot sees it (never past an event it did not see, never back).
WITH g AS (
    SELECT g.id, g.cursor, st.first_seq, extract(epoch from clock_timestamp())::float8 AS now
    FROM {s}.groups g, {s}.streams st WHERE g.id = $1 AND st.id = $2 FOR UPDATE OF g
), x AS (
    DELETE FROM {s}.batches b WHERE b.group_id = $1 AND b.token IN (
        SELECT token FROM {s}.batches WHERE group_id = (SELECT id FROM g)
        AND due <= (SELECT now FROM g) FOR UPDATE SKIP LOCKED)
    RETURNING b.token, b.consumer, b.due, b.seqs
), xi AS (
    INSERT INTO {s}.pending (group_id, seq, event_id, state, consumer, due, attempts, token)
    SELECT $1, e.seq, e.id, 1, x.consumer, x.due, 1, x.token
    FROM x CROSS JOIN LATERAL unnest(x.seqs) AS t(seq)
    JOIN {s}.events e ON e.stream_id = $2 AND e.seq = t.seq
    ON CONFLICT DO NOTHING
), room AS (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM x) THEN 0 ELSE $3 END AS n
), c AS (
    SELECT p.seq FROM {s}.pending p
    WHERE p.group_id = (SELECT id FROM g) AND p.due <= (SELECT now FROM g)
    ORDER BY p.seq LIMIT (SELECT n FROM room) FOR UPDATE SKIP LOCKED
), u AS (
    UPDATE {s}.pending p SET state = 1, consumer = $4, due = (SELECT now FROM g) + $5,
        attempts = p.attempts + 1, token = $7,
        reason = CASE WHEN p.state = 1 AND p.reason IS NULL THEN $6 ELSE p.reason END
    FROM c WHERE p.group_id = $1 AND p.seq = c.seq
    RETURNING p.seq, p.attempts, p.reason, p.event
), new AS (
    SELECT e.seq, e.id, e.type, e.correlation_id, e.ts, e.data, e.content_type, e.headers, e.part
    FROM {s}.events e
    -- a scalar subquery, so that the index scan starts at the cursor
    WHERE e.stream_id = $2 AND e.seq >= (SELECT greatest(cursor, first_seq) FROM g){match}
    ORDER BY e.seq LIMIT (SELECT n FROM room) - (SELECT count(*) FROM u)
), ins AS (
    INSERT INTO {s}.batches (group_id, token, consumer, due, seqs)
    SELECT $1, $7, $4, (SELECT now FROM g) + $5, array_agg(seq ORDER BY seq) FROM new
    HAVING count(*) > 0
), moved AS (
    UPDATE {s}.groups SET cursor = greatest(cursor,
        CASE WHEN (SELECT count(*) FROM new) = (SELECT n FROM room) - (SELECT count(*) FROM u)
             THEN (SELECT max(seq) + 1 FROM new)
             ELSE (SELECT next_seq FROM {s}.streams WHERE id = $2) END)
    WHERE id = (SELECT id FROM g) AND (SELECT n FROM room) > 0
)
SELECT 0 AS kind, u.seq, u.attempts, u.reason, u.event,
       e.seq, e.id, e.type, e.correlation_id, e.ts, e.data, e.content_type, e.headers, e.part,
       NULL::float8 AS now, NULL::float8 AS next_due
FROM u LEFT JOIN {s}.events e ON e.stream_id = $2 AND e.seq = u.seq
UNION ALL
SELECT 1, new.seq, 1, NULL, NULL, new.*, NULL, NULL FROM new
UNION ALL
SELECT 2, (SELECT count(*) FROM x), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, (SELECT now FROM g),
       -- when the next event of the group becomes due: what a consumer that got nothing waits
       -- for (looked up only then)
       CASE WHEN NOT EXISTS (SELECT 1 FROM u) AND NOT EXISTS (SELECT 1 FROM new) THEN
           least((SELECT min(p.due) FROM {s}.pending p
                  WHERE p.group_id = $1 AND p.due > (SELECT now FROM g)),
                 (SELECT min(b.due) FROM {s}.batches b
                  WHERE b.group_id = $1 AND b.due > (SELECT now FROM g))) END
ORDER BY 1, 2
