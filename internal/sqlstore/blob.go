package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/silofl/silo"
)

// Session blobs hold a session's large binary values — a round's global
// model, a runner's update, a blinded set — once, in chunks, referenced by
// name from the tasks that carry them. Chunks keep any one row (and any one
// read) small, so a blob of hundreds of MB streams in and out of the store
// without being held whole.

// BlobChunk is the size of a blob's chunks.
const BlobChunk = 4 << 20

// BlobInfo is a blob's size and digest (silo.Digest of its bytes).
type BlobInfo struct {
	Name   string
	Size   int64
	Digest string
	// Data is the blob itself when SessionBlobInfos read it (a small one).
	Data []byte
}

// putBlob replaces or creates a blob within tx: its row and chunks are
// written over in place (a round's model replaces the last one's), and
// chunks beyond its new length dropped.
func (db *DB) putBlob(ctx context.Context, tx *sql.Tx, session, name string, data []byte) error {
	if _, err := db.execTx(ctx, tx, sqlUpsertBlob, session, name, len(data), silo.Digest(data), micros(db.now())); err != nil {
		return fmt.Errorf("store blob %s: %w", name, err)
	}
	seq := 0
	for ; seq == 0 || seq*BlobChunk < len(data); seq++ {
		chunk := data[seq*BlobChunk : min(len(data), (seq+1)*BlobChunk)]
		if chunk == nil {
			chunk = []byte{} // an empty blob, not a NULL
		}
		if _, err := db.execTx(ctx, tx, sqlUpsertChunk, session, name, seq, chunk); err != nil {
			return fmt.Errorf("store blob %s: %w", name, err)
		}
	}
	if _, err := db.execTx(ctx, tx, sqlTrimChunks, session, name, seq); err != nil {
		return fmt.Errorf("store blob %s: %w", name, err)
	}
	return nil
}

// insertBlob creates a blob within tx; none of that name may exist.
func (db *DB) insertBlob(ctx context.Context, tx *sql.Tx, session, name string, data []byte) error {
	if _, err := db.execTx(ctx, tx, sqlInsertBlob, session, name, len(data), silo.Digest(data), micros(db.now())); err != nil {
		return fmt.Errorf("store blob %s: %w", name, err)
	}
	for seq := 0; seq == 0 || seq*BlobChunk < len(data); seq++ {
		chunk := data[seq*BlobChunk : min(len(data), (seq+1)*BlobChunk)]
		if chunk == nil {
			chunk = []byte{} // an empty blob, not a NULL
		}
		if _, err := db.execTx(ctx, tx, sqlInsertChunk, session, name, seq, chunk); err != nil {
			return fmt.Errorf("store blob %s: %w", name, err)
		}
	}
	return nil
}

var (
	sqlInsertBlob  = prepared(`INSERT INTO session_blobs (session_id, name, size, digest, created_at) VALUES (?, ?, ?, ?, ?)`)
	sqlInsertChunk = prepared(`INSERT INTO session_blob_chunks (session_id, name, seq, data) VALUES (?, ?, ?, ?)`)
	sqlUpsertBlob  = prepared(`INSERT INTO session_blobs (session_id, name, size, digest, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (session_id, name) DO UPDATE SET size = excluded.size, digest = excluded.digest, created_at = excluded.created_at`)
	sqlUpsertChunk = prepared(`INSERT INTO session_blob_chunks (session_id, name, seq, data) VALUES (?, ?, ?, ?)
		ON CONFLICT (session_id, name, seq) DO UPDATE SET data = excluded.data`)
	sqlTrimChunks = prepared(`DELETE FROM session_blob_chunks WHERE session_id = ? AND name = ? AND seq >= ?`)
	// A range of names: every name that starts with a prefix, on SQLite,
	// which compares text bytewise (PostgreSQL's collations may not).
	sqlDropBlobRange = [2]string{prepared(`DELETE FROM session_blob_chunks WHERE session_id = ? AND name >= ? AND name < ?`), prepared(`DELETE FROM session_blobs WHERE session_id = ? AND name >= ? AND name < ?`)}
	sqlDropBlob      = [2]string{prepared(`DELETE FROM session_blob_chunks WHERE session_id = ? AND name = ?`), prepared(`DELETE FROM session_blobs WHERE session_id = ? AND name = ?`)}
	sqlDropBlobs     = [2]string{prepared(`DELETE FROM session_blob_chunks WHERE session_id = ? AND IN_LIST(name)`), prepared(`DELETE FROM session_blobs WHERE session_id = ? AND IN_LIST(name)`)}
	sqlBlobNames     = prepared(`SELECT name FROM session_blobs WHERE session_id = ?`)
)

// rangeDrops is the most name prefixes dropBlobs drops as ranges.
const rangeDrops = 8

// dropBlobs removes blobs by name; a name ending in "*" removes every blob
// whose name starts with the rest. Patterns are matched against the
// session's blob names, read once, so a step that drops the results of a
// hundred tasks costs a read and a delete per table, not a scan per task.
func (db *DB) dropBlobs(ctx context.Context, tx *sql.Tx, session string, names []string) error {
	var exact, prefixes []string
	for _, n := range names {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			prefixes = append(prefixes, p)
		} else {
			exact = append(exact, n)
		}
	}
	// A few prefixes (a step of a few clients' results) are ranges of the
	// blobs' index on SQLite.
	if db.dialect == sqliteDialect && len(prefixes) <= rangeDrops {
		for _, p := range prefixes {
			if p == "" || p[len(p)-1] == 0xff {
				return fmt.Errorf("drop blobs: no range for prefix %q", p)
			}
			end := p[:len(p)-1] + string([]byte{p[len(p)-1] + 1})
			for _, q := range sqlDropBlobRange {
				if _, err := db.execTx(ctx, tx, q, session, p, end); err != nil {
					return fmt.Errorf("drop blobs %s*: %w", p, err)
				}
			}
		}
		prefixes = nil
	}
	if len(prefixes) > 0 {
		rows, err := db.queryTx(ctx, tx, sqlBlobNames, session)
		if err != nil {
			return fmt.Errorf("drop blobs: %w", err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				_ = rows.Close()
				return err
			}
			if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(n, p) }) {
				exact = append(exact, n)
			}
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("drop blobs: %w", err)
		}
	}
	switch len(exact) {
	case 0:
		return nil
	case 1:
		for _, q := range sqlDropBlob {
			if _, err := db.execTx(ctx, tx, q, session, exact[0]); err != nil {
				return fmt.Errorf("drop blob %s: %w", exact[0], err)
			}
		}
		return nil
	}
	for _, q := range sqlDropBlobs {
		if _, err := db.execTx(ctx, tx, q, session, db.listArg(exact)); err != nil {
			return fmt.Errorf("drop blobs: %w", err)
		}
	}
	return nil
}

// likePrefix is a LIKE pattern (with ESCAPE '\') matching names that start
// with prefix: its own %, _ and \ match only themselves.
func likePrefix(prefix string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
}

// PutSessionBlob replaces or creates a blob.
func (db *DB) PutSessionBlob(ctx context.Context, session, name string, data []byte) error {
	return db.tx(ctx, 0, func(tx *sql.Tx) error { return db.putBlob(ctx, tx, session, name, data) })
}

// DropSessionBlobs removes blobs as Advance.DropBlobs does.
func (db *DB) DropSessionBlobs(ctx context.Context, session string, names ...string) error {
	return db.tx(ctx, 0, func(tx *sql.Tx) error { return db.dropBlobs(ctx, tx, session, names) })
}

// DropSessionBlobsExcept removes every blob of a session whose name does
// not start with keep: what an ended session no longer needs.
func (db *DB) DropSessionBlobsExcept(ctx context.Context, session, keep string) error {
	like := likePrefix(keep)
	return db.tx(ctx, 0, func(tx *sql.Tx) error {
		for _, table := range []string{"session_blob_chunks", "session_blobs"} {
			if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM `+table+` WHERE session_id = ? AND name NOT LIKE ? ESCAPE '\'`), session, like); err != nil {
				return fmt.Errorf("drop blobs of session %s: %w", session, err)
			}
		}
		return nil
	})
}

// SessionBlobInfos returns the size and digest of the named blobs, in order,
// and the data of those of at most SmallBlob bytes: most of a task's parts
// are, and it is then sent without another read. A missing blob is an
// ENOTFOUND error.
func (db *DB) SessionBlobInfos(ctx context.Context, session string, names []string) ([]BlobInfo, error) {
	rows, err := db.queryR(ctx, sqlBlobInfos, SmallBlob, session, db.listArg(names))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := map[string]BlobInfo{}
	for rows.Next() {
		var b BlobInfo
		if err := rows.Scan(&b.Name, &b.Size, &b.Digest, &b.Data); err != nil {
			return nil, err
		}
		if b.Data == nil && b.Size <= SmallBlob {
			b.Data = []byte{}
		}
		found[b.Name] = b
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]BlobInfo, len(names))
	for i, n := range names {
		b, ok := found[n]
		if !ok {
			return nil, silo.Errorf(silo.ENOTFOUND, "session %s has no blob %s", session, n)
		}
		out[i] = b
	}
	return out, nil
}

// SmallBlob is the largest blob SessionBlobInfos reads whole.
const SmallBlob = 64 << 10

var (
	sqlBlobInfos = prepared(`SELECT b.name, b.size, b.digest, CASE WHEN b.size <= ? THEN c.data END FROM session_blobs b
		LEFT JOIN session_blob_chunks c ON c.session_id = b.session_id AND c.name = b.name AND c.seq = 0
		WHERE b.session_id = ? AND IN_LIST(b.name)`)
	sqlBlobChunk  = prepared(`SELECT data FROM session_blob_chunks WHERE session_id = ? AND name = ? AND seq = ?`)
	sqlBlobChunks = prepared(`SELECT b.size, c.data FROM session_blobs b JOIN session_blob_chunks c ON c.session_id = b.session_id AND c.name = b.name
		WHERE b.session_id = ? AND b.name = ? ORDER BY c.seq`)
)

// SessionBlob reads a whole blob, in one query.
func (db *DB) SessionBlob(ctx context.Context, session, name string) ([]byte, error) {
	rows, err := db.queryR(ctx, sqlBlobChunks, session, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var buf []byte
	size := int64(-1)
	for rows.Next() {
		var chunk []byte
		if err := rows.Scan(&size, &chunk); err != nil {
			return nil, err
		}
		if buf == nil {
			buf = make([]byte, 0, size)
		}
		buf = append(buf, chunk...)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, silo.Errorf(silo.ENOTFOUND, "session %s has no blob %s", session, name)
	}
	if int64(len(buf)) != size {
		return nil, fmt.Errorf("blob %s of session %s: %d bytes stored, %d expected", name, session, len(buf), size)
	}
	return buf, nil
}

// CopySessionBlob writes a blob to w chunk by chunk.
func (db *DB) CopySessionBlob(ctx context.Context, session, name string, w io.Writer) error {
	return db.readBlob(ctx, session, name, func(chunk []byte) error { _, err := w.Write(chunk); return err })
}

// readBlob reads a blob's chunks in order, one query each: a long copy to a
// slow client holds no connection between chunks. Every chunk but the last
// is full, so a short one ends the blob without another query.
func (db *DB) readBlob(ctx context.Context, session, name string, fn func([]byte) error) error {
	for seq := 0; ; seq++ {
		var chunk []byte
		err := db.queryRowR(ctx, sqlBlobChunk, session, name, seq).Scan(&chunk)
		if errors.Is(err, sql.ErrNoRows) {
			if seq == 0 {
				return silo.Errorf(silo.ENOTFOUND, "session %s has no blob %s", session, name)
			}
			return nil
		} else if err != nil {
			return err
		}
		if err := fn(chunk); err != nil {
			return err
		}
		if len(chunk) < BlobChunk {
			return nil
		}
	}
}

// WriteSessionBlob streams r (at most limit bytes, exactly size when size is
// not negative) into a blob, a chunk per transaction, so a large upload
// holds neither memory nor the writer for long; the blob appears under its
// name only once complete.
func (db *DB) WriteSessionBlob(ctx context.Context, session, name string, r io.Reader, size int64) (BlobInfo, error) {
	staging := "staging/" + name
	if err := db.DropSessionBlobs(ctx, session, staging); err != nil {
		return BlobInfo{}, err
	}
	h := sha256.New()
	buf := make([]byte, BlobChunk)
	var total int64
	for seq := 0; ; seq++ {
		n, err := io.ReadFull(r, buf)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
		} else if err != nil {
			return BlobInfo{}, err
		}
		if n > 0 || seq == 0 {
			h.Write(buf[:n])
			total += int64(n)
			if _, err := db.wdb.ExecContext(ctx, db.q(`INSERT INTO session_blob_chunks (session_id, name, seq, data) VALUES (?, ?, ?, ?)`), session, staging, seq, buf[:n]); err != nil {
				return BlobInfo{}, fmt.Errorf("store blob %s: %w", name, err)
			}
		}
		if n < len(buf) {
			break
		}
	}
	if size >= 0 && total != size {
		_ = db.DropSessionBlobs(context.WithoutCancel(ctx), session, staging)
		return BlobInfo{}, silo.Errorf(silo.EINVALID, "blob %s: %d bytes sent, %d announced", name, total, size)
	}
	info := BlobInfo{Name: name, Size: total, Digest: hex.EncodeToString(h.Sum(nil)[:16])}
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		if err := db.dropBlobs(ctx, tx, session, []string{name}); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE session_blob_chunks SET name = ? WHERE session_id = ? AND name = ?`), name, session, staging); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, db.q(`INSERT INTO session_blobs (session_id, name, size, digest, created_at) VALUES (?, ?, ?, ?, ?)`),
			session, name, total, info.Digest, micros(db.now()))
		return err
	})
	return info, err
}
