package actions

// The outbox file is an append-only log:
//
//	magic   "rollguard outbox v1\n"
//	record* each one Append batch or one Ack
//
// and every record is framed as
//
//	0:4    payload length n, uint32 little-endian (at most maxOutboxRecord)
//	4      kind: 1 = batch, 2 = ack
//	5:9    CRC-32C of bytes 0:5 (the frame header, so a damaged length is caught)
//	9:13   CRC-32C of the payload
//	13:    payload, n bytes
//
// A batch payload is uvarint(count) followed by count messages; a message
// is Subject, ID, Data (each uvarint length + bytes), uvarint(header count)
// and the header's key/value pairs (each uvarint length + bytes) in
// strictly increasing key order. An ack payload is uvarint(k): the first k
// pending messages were delivered. One Append is one record, so a crash in
// the middle of a batch loses the whole batch and never a part of it.
//
// The file never grows without bound: acknowledging everything truncates it
// back to the magic, and once acknowledged bytes outweigh pending ones (past
// outboxCompactMin) the pending messages are rewritten to a temporary file
// that is fsynced and renamed over the log, and the directory is fsynced.
//
// Damage policy. Append fsyncs each record before it returns, so a crash
// can only damage the last record, which nobody was told was stored. When
// the records stop parsing at some offset, decodeOutbox looks for any
// intact record after that offset: if there is none, the damage is a torn
// tail and is discarded (OpenOutbox truncates it away); if there is one,
// the damage is in the middle of the log, where it can only come from the
// disk or from another writer, and OpenOutbox refuses to open the file,
// naming the file and the offset and leaving the file untouched. The
// outbox holds rollback commands: silently dropping or reordering them
// would be worse than asking an operator to move the file aside. A last
// record damaged by bit rot rather than by a crash looks exactly like a
// torn write and is discarded too; nothing can tell the two apart.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

const (
	outboxMagic     = "rollguard outbox v1\n"
	outboxFrameLen  = 13 // length, kind, header CRC, payload CRC
	outboxKindBatch = 1
	outboxKindAck   = 2
	// maxOutboxRecord bounds one record's payload (one Append batch). NATS
	// refuses payloads over 1 MiB by default and 64 MiB at most; an outbox
	// message far beyond that is a bug, and the bound keeps a hostile
	// length from meaning anything.
	maxOutboxRecord = 16 << 20
	// outboxCompactMin is the file size below which acknowledged records
	// are left in place rather than rewritten away.
	outboxCompactMin = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrOutboxClosed is returned by changes to a closed Outbox.
	ErrOutboxClosed = errors.New("actions: outbox closed")
	// ErrOutboxCorrupt is wrapped by OpenOutbox's error when the file is
	// damaged before its last record or is not an outbox at all.
	ErrOutboxCorrupt = errors.New("actions: outbox corrupt")
)

// Queue is the Playbook's view of the outbox.
var _ Queue = (*Outbox)(nil)

// Outbox is a durable, ordered queue of messages on local disk: what the
// playbook must publish to NATS survives NATS being away and rollguard
// being killed. It is safe for concurrent use. One process owns the file;
// two Outboxes on the same path would corrupt it.
type Outbox struct {
	path       string
	compactMin int64 // outboxCompactMin; lowered by tests

	mu      sync.Mutex
	f       *os.File
	size    int64     // bytes of the file that are known good
	pending []Message // owned by the Outbox, never modified in place
	sizes   []int     // encoded size of each pending message
	live    int64     // sum of sizes
	closed  bool
	failed  error // set by a failed write or fsync; the file must be reopened
	// failedAt is when failed was set or a reopen last failed; a reopen is
	// tried at most once per reopenEvery (a disk that is still full).
	failedAt    time.Time
	reopenEvery time.Duration
}

// outboxReopenEvery is how often a failed Outbox tries to reopen its file.
const outboxReopenEvery = time.Second

// OpenOutbox opens the outbox at path, creating the file and its directory
// if missing, and loads the messages still pending. A torn last record is
// discarded; damage before it is an error wrapping ErrOutboxCorrupt that
// names the file and the offset, and the file is left as it is.
func OpenOutbox(path string) (*Outbox, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	// A compaction that crashed before its rename leaves this behind; the
	// log itself still holds everything.
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open outbox %s: remove stale temporary file: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	o, err := loadOutbox(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}

func loadOutbox(path string, f *os.File) (*Outbox, error) {
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: read: %w", path, err)
	}
	msgs, valid, err := decodeOutbox(b)
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: %w; the file was left as it is: "+
			"move it aside to start with an empty outbox (%d messages are pending before the damage)", path, err, len(msgs))
	}
	o := &Outbox{path: path, compactMin: outboxCompactMin, reopenEvery: outboxReopenEvery, f: f, pending: msgs}
	for _, m := range msgs {
		n := encodedMessageSize(m)
		o.sizes = append(o.sizes, n)
		o.live += int64(n)
	}
	switch {
	case valid < len(outboxMagic): // new, or torn while it was being created
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("open outbox %s: %w", path, err)
		}
		if _, err := f.WriteAt([]byte(outboxMagic), 0); err != nil {
			return nil, fmt.Errorf("open outbox %s: write header: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("open outbox %s: fsync: %w", path, err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("open outbox %s: %w", path, err)
		}
		o.size = int64(len(outboxMagic))
	default:
		// Cut a torn tail, and acknowledged records when nothing is pending.
		keep := valid
		if len(msgs) == 0 {
			keep = len(outboxMagic)
		}
		if keep != len(b) {
			if err := f.Truncate(int64(keep)); err != nil {
				return nil, fmt.Errorf("open outbox %s: drop torn tail at offset %d: %w", path, keep, err)
			}
			if err := f.Sync(); err != nil {
				return nil, fmt.Errorf("open outbox %s: fsync: %w", path, err)
			}
		}
		o.size = int64(keep)
	}
	return o, nil
}

// Append stores ms after the pending messages. When it returns nil they
// are on disk (written and fsynced); on an error none of them is pending.
// The Outbox keeps its own copies of ms.
func (o *Outbox) Append(ms ...Message) error {
	if len(ms) == 0 {
		return nil
	}
	sizes := make([]int, len(ms))
	total := uvarintLen(uint64(len(ms)))
	for i, m := range ms {
		sizes[i] = encodedMessageSize(m)
		total += sizes[i]
	}
	if total > maxOutboxRecord {
		return fmt.Errorf("outbox %s: a batch of %d messages takes %d bytes, over the limit of %d", o.path, len(ms), total, maxOutboxRecord)
	}
	payload := make([]byte, 0, total)
	payload = binary.AppendUvarint(payload, uint64(len(ms)))
	copies := make([]Message, len(ms))
	for i, m := range ms {
		payload = appendOutboxMessage(payload, m)
		copies[i] = cloneMessage(m)
	}
	rec := appendOutboxRecord(make([]byte, 0, outboxFrameLen+len(payload)), outboxKindBatch, payload)

	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.usable(); err != nil {
		return err
	}
	if err := o.write(rec); err != nil {
		return err
	}
	o.pending = append(o.pending, copies...)
	o.sizes = append(o.sizes, sizes...)
	for _, n := range sizes {
		o.live += int64(n)
	}
	return nil
}

// Pending returns the pending messages in order, in a new slice. Their
// Data and Header belong to the Outbox, which never changes them: read,
// do not modify. (Copying every payload on each publish attempt would
// cost more than the outbox is worth while NATS is away.)
func (o *Outbox) Pending() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.pending)
}

// Degraded says why the Outbox cannot store messages now — a failed write
// or fsync it has not recovered from — or nil. Asking tries the reopen
// (at most once per retry interval), so a disk with room again clears it
// even when no step has anything to append.
func (o *Outbox) Degraded() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.failed == nil {
		return nil
	}
	return o.usable()
}

// Len is the number of pending messages.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// Ack drops the first n pending messages, which were delivered; when it
// returns nil that is on disk. Ack(0) does nothing; acknowledging more
// than is pending is an error and changes nothing.
func (o *Outbox) Ack(n int) error {
	if n == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.usable(); err != nil {
		return err
	}
	if n < 0 || n > len(o.pending) {
		return fmt.Errorf("outbox %s: ack of %d messages, but %d are pending", o.path, n, len(o.pending))
	}
	liveAfter := o.live
	for _, s := range o.sizes[:n] {
		liveAfter -= int64(s)
	}
	switch {
	case n == len(o.pending):
		if err := o.truncate(int64(len(outboxMagic))); err != nil {
			return err
		}
	case o.size > o.compactMin && o.size-liveAfter > liveAfter:
		if err := o.rewrite(o.pending[n:]); err != nil {
			return err
		}
	default:
		payload := binary.AppendUvarint(nil, uint64(n))
		if err := o.write(appendOutboxRecord(nil, outboxKindAck, payload)); err != nil {
			return err
		}
	}
	clear(o.pending[:n]) // let the payloads go
	o.pending, o.sizes, o.live = o.pending[n:], o.sizes[n:], liveAfter
	if len(o.pending) == 0 {
		o.pending, o.sizes = nil, nil
	}
	return nil
}

// Close closes the file; every change is already on disk. It is safe on
// nil and safe twice.
func (o *Outbox) Close() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("close outbox %s: %w", o.path, err)
	}
	return nil
}

func (o *Outbox) usable() error {
	if o.closed {
		return fmt.Errorf("outbox %s: %w", o.path, ErrOutboxClosed)
	}
	if o.failed != nil && !o.reopen() {
		return fmt.Errorf("outbox %s: unusable since an earlier failure (reopened every %s until it works): %w", o.path, o.reopenEvery, o.failed)
	}
	return nil
}

// reopen recovers from a failed write or fsync by itself, once the disk
// allows: the file is read again and decides what is pending, as after a
// restart. It reports whether the Outbox is usable again.
func (o *Outbox) reopen() bool {
	if time.Since(o.failedAt) < o.reopenEvery {
		return false
	}
	n, err := OpenOutbox(o.path)
	if err != nil {
		o.failedAt = time.Now()
		return false
	}
	_ = o.f.Close()
	o.f, o.size, o.pending, o.sizes, o.live = n.f, n.size, n.pending, n.sizes, n.live
	o.failed = nil
	return true
}

// write appends rec to the file and fsyncs it.
func (o *Outbox) write(rec []byte) error {
	if _, err := o.f.WriteAt(rec, o.size); err != nil {
		return o.fail("write", err)
	}
	if err := o.f.Sync(); err != nil {
		return o.fail("fsync", err)
	}
	o.size += int64(len(rec))
	return nil
}

// truncate cuts the file to size and fsyncs it.
func (o *Outbox) truncate(size int64) error {
	if err := o.f.Truncate(size); err != nil {
		return o.fail("truncate", err)
	}
	if err := o.f.Sync(); err != nil {
		return o.fail("fsync", err)
	}
	o.size = size
	return nil
}

// fail records a failed write or fsync. After a failed fsync the page
// cache no longer says what is on disk, so the Outbox refuses further
// changes until it is reopened and the file decides. Cutting what may be
// a partly written record makes that reopen see the file as it was.
func (o *Outbox) fail(op string, err error) error {
	_ = o.f.Truncate(o.size)
	_ = o.f.Sync()
	o.failed = fmt.Errorf("outbox %s: %s: %w", o.path, op, err)
	o.failedAt = time.Now()
	return o.failed
}

// rewrite replaces the file with one holding only msgs: temporary file,
// fsync, rename, directory fsync. Until the rename the old file is
// intact; a crash leaves either the old log or the new one.
func (o *Outbox) rewrite(msgs []Message) error {
	b, err := encodeOutbox(msgs)
	if err != nil {
		return fmt.Errorf("outbox %s: compact: %w", o.path, err)
	}
	tmp := o.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outbox %s: compact: %w", o.path, err)
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, o.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("outbox %s: compact: %w", o.path, err)
	}
	o.f.Close() // the old log, now unlinked
	o.f, o.size = f, int64(len(b))
	if err := syncDir(filepath.Dir(o.path)); err != nil {
		// The rename may or may not survive a crash; both files are valid.
		o.failed = fmt.Errorf("outbox %s: compact: %w", o.path, err)
		return o.failed
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// encodeOutbox encodes msgs as a complete outbox file without
// acknowledgements, in as few batch records as the size limit allows.
func encodeOutbox(msgs []Message) ([]byte, error) {
	b := []byte(outboxMagic)
	for len(msgs) > 0 {
		total, n := 0, 0
		for n < len(msgs) {
			s := encodedMessageSize(msgs[n])
			if total+s+uvarintLen(uint64(n+1)) > maxOutboxRecord {
				break
			}
			total += s
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("message %q takes %d bytes, over the limit of %d", msgs[0].ID, encodedMessageSize(msgs[0]), maxOutboxRecord)
		}
		payload := binary.AppendUvarint(make([]byte, 0, total+uvarintLen(uint64(n))), uint64(n))
		for _, m := range msgs[:n] {
			payload = appendOutboxMessage(payload, m)
		}
		b = appendOutboxRecord(b, outboxKindBatch, payload)
		msgs = msgs[n:]
	}
	return b, nil
}

// outboxCorruption is damage decodeOutbox cannot pass over.
type outboxCorruption struct {
	offset int
	reason string
}

func (e *outboxCorruption) Error() string {
	return fmt.Sprintf("corrupt record at offset %d: %s", e.offset, e.reason)
}

func (e *outboxCorruption) Unwrap() error { return ErrOutboxCorrupt }

// decodeOutbox parses an outbox file. It returns the pending messages and
// the length of the prefix of b made of whole, intact records. With a nil
// error, b[validLen:] is a torn tail to discard; a validLen below the
// magic's length means a new (or torn while new) file. With an error
// (wrapping ErrOutboxCorrupt, naming the offset), msgs are those pending
// before the damage, which starts at validLen. It never panics and
// allocates in proportion to len(b).
func decodeOutbox(b []byte) (msgs []Message, validLen int, err error) {
	if len(b) < len(outboxMagic) {
		if string(b) == outboxMagic[:len(b)] {
			return nil, 0, nil
		}
		return nil, 0, &outboxCorruption{0, "not a rollguard outbox file"}
	}
	if string(b[:len(outboxMagic)]) != outboxMagic {
		return nil, 0, &outboxCorruption{0, "not a rollguard outbox file"}
	}
	off := len(outboxMagic)
	for off < len(b) {
		kind, payload, n, problem := readOutboxFrame(b[off:])
		if problem != "" {
			switch next, unsure := nextOutboxFrame(b, off+1); {
			case unsure:
				return msgs, off, &outboxCorruption{off, problem + ", and what follows is too damaged to tell a torn tail"}
			case next >= 0:
				return msgs, off, &outboxCorruption{off, fmt.Sprintf("%s, yet an intact record follows at offset %d", problem, next)}
			}
			return msgs, off, nil // torn tail
		}
		switch kind {
		case outboxKindBatch:
			batch, err := decodeOutboxBatch(payload)
			if err != nil {
				return msgs, off, &outboxCorruption{off, err.Error()}
			}
			msgs = append(msgs, batch...)
		case outboxKindAck:
			r := outboxReader{b: payload}
			k := r.uvarint()
			if r.err == nil && len(r.b) != 0 {
				r.err = errors.New("trailing bytes")
			}
			if r.err != nil {
				return msgs, off, &outboxCorruption{off, "ack: " + r.err.Error()}
			}
			if k == 0 || k > uint64(len(msgs)) {
				return msgs, off, &outboxCorruption{off, fmt.Sprintf("ack of %d messages, but %d are pending", k, len(msgs))}
			}
			clear(msgs[:k])
			msgs = msgs[k:]
		default:
			return msgs, off, &outboxCorruption{off, fmt.Sprintf("unknown record kind %d (written by a newer rollguard?)", kind)}
		}
		off += n
	}
	if len(msgs) == 0 {
		msgs = nil
	}
	return msgs, off, nil
}

// readOutboxFrame checks the record at the start of b and returns its kind,
// its payload and its length, or why it is not intact.
func readOutboxFrame(b []byte) (kind byte, payload []byte, n int, problem string) {
	if len(b) < outboxFrameLen {
		return 0, nil, 0, "incomplete record header"
	}
	if crc32.Checksum(b[:5], castagnoli) != binary.LittleEndian.Uint32(b[5:9]) {
		return 0, nil, 0, "record header checksum mismatch"
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	if size > maxOutboxRecord {
		return 0, nil, 0, fmt.Sprintf("record length %d over the limit of %d", size, maxOutboxRecord)
	}
	if uint64(size) > uint64(len(b)-outboxFrameLen) {
		return 0, nil, 0, fmt.Sprintf("record of %d bytes runs past the end of the file", size)
	}
	payload = b[outboxFrameLen : outboxFrameLen+int(size)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[9:13]) {
		return 0, nil, 0, "record payload checksum mismatch"
	}
	return b[4], payload, outboxFrameLen + int(size), ""
}

// nextOutboxFrame is the offset of the first intact record at or after
// from, or -1. Most offsets cost only a header checksum; payload checksums
// are budgeted so that crafted input cannot make the scan quadratic, and a
// spent budget answers unsure: refusing to open is the side to err on.
func nextOutboxFrame(b []byte, from int) (next int, unsure bool) {
	budget := int64(4*len(b) + 1<<20)
	for i := from; i+outboxFrameLen <= len(b); i++ {
		if crc32.Checksum(b[i:i+5], castagnoli) != binary.LittleEndian.Uint32(b[i+5:i+9]) {
			continue
		}
		if budget -= int64(binary.LittleEndian.Uint32(b[i : i+4])); budget < 0 {
			return -1, true
		}
		if _, _, _, problem := readOutboxFrame(b[i:]); problem == "" {
			return i, false
		}
	}
	return -1, false
}

func decodeOutboxBatch(p []byte) ([]Message, error) {
	r := outboxReader{b: p}
	count := r.uvarint()
	if r.err != nil {
		return nil, fmt.Errorf("batch: %w", r.err)
	}
	// Every message takes at least four bytes, so a hostile count cannot
	// make us allocate more than the payload's size.
	msgs := make([]Message, 0, min(count, uint64(len(r.b)/4)))
	for i := uint64(0); i < count; i++ {
		m := Message{Subject: string(r.bytes()), ID: string(r.bytes())}
		if d := r.bytes(); len(d) > 0 {
			m.Data = bytes.Clone(d)
		}
		nh := r.uvarint()
		if r.err == nil && nh > 0 {
			m.Header = make(map[string]string, min(nh, uint64(len(r.b)/2)))
			prev := ""
			for j := uint64(0); j < nh && r.err == nil; j++ {
				k, v := string(r.bytes()), string(r.bytes())
				if r.err == nil && j > 0 && k <= prev {
					r.err = fmt.Errorf("header key %q out of order", k)
				}
				m.Header[k], prev = v, k
			}
		}
		if r.err != nil {
			return nil, fmt.Errorf("batch message %d of %d: %w", i+1, count, r.err)
		}
		msgs = append(msgs, m)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("batch: %d trailing bytes", len(r.b))
	}
	return msgs, nil
}

// outboxReader reads uvarints and length-prefixed bytes; the first error
// sticks and later reads return zero values.
type outboxReader struct {
	b   []byte
	err error
}

func (r *outboxReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *outboxReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("field of %d bytes runs past the record", n)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func appendOutboxRecord(b []byte, kind byte, payload []byte) []byte {
	var h [outboxFrameLen]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	h[4] = kind
	binary.LittleEndian.PutUint32(h[5:9], crc32.Checksum(h[:5], castagnoli))
	binary.LittleEndian.PutUint32(h[9:13], crc32.Checksum(payload, castagnoli))
	return append(append(b, h[:]...), payload...)
}

func appendOutboxMessage(b []byte, m Message) []byte {
	b = appendOutboxString(b, m.Subject)
	b = appendOutboxString(b, m.ID)
	b = binary.AppendUvarint(b, uint64(len(m.Data)))
	b = append(b, m.Data...)
	b = binary.AppendUvarint(b, uint64(len(m.Header)))
	for _, k := range sortedKeys(m.Header) {
		b = appendOutboxString(b, k)
		b = appendOutboxString(b, m.Header[k])
	}
	return b
}

func encodedMessageSize(m Message) int {
	n := stringFieldLen(m.Subject) + stringFieldLen(m.ID) + uvarintLen(uint64(len(m.Data))) + len(m.Data) + uvarintLen(uint64(len(m.Header)))
	for k, v := range m.Header {
		n += stringFieldLen(k) + stringFieldLen(v)
	}
	return n
}

func appendOutboxString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func stringFieldLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func sortedKeys(h map[string]string) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// cloneMessage copies m's Data and Header so that the caller may reuse them.
func cloneMessage(m Message) Message {
	if len(m.Data) > 0 {
		m.Data = bytes.Clone(m.Data)
	} else {
		m.Data = nil
	}
	if len(m.Header) > 0 {
		m.Header = maps.Clone(m.Header)
	} else {
		m.Header = nil
	}
	return m
}
