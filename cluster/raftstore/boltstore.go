package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket names inside the bbolt file.
var (
	bucketLogs = []byte("logs") // big-endian uint64 index -> encoded raft.Log
	bucketConf = []byte("conf") // raft.StableStore keys -> values
)

// openTimeout bounds how long OpenBoltStore waits for bbolt's exclusive file
// lock, so that a second agent on the same data dir fails fast.
const openTimeout = time.Second

// ErrKeyNotFound is returned by Get and GetUint64 for a missing key. raft
// v1.8.0 recognises a missing key only by err.Error() == "not found" (NewRaft,
// HasExistingState and requestVote), so the text must stay exactly that.
var ErrKeyNotFound = errors.New("not found")

// BoltStore implements raft.LogStore and raft.StableStore on a bbolt file.
//
// Logs live in bucket "logs" keyed by the big-endian uint64 index, so that
// bbolt's byte order is index order. Stable-store entries live in bucket
// "conf"; SetUint64 stores 8 big-endian bytes.
//
// A log value is a compact binary encoding of every raft.Log field:
//
//	byte      format version (1)
//	uvarint   Index
//	uvarint   Term
//	byte      Type
//	uvarint   len(Data), Data
//	uvarint   len(Extensions), Extensions
//	byte      0 if AppendedAt is the zero time, else 1 followed by
//	varint    AppendedAt Unix seconds
//	uvarint   AppendedAt nanoseconds within the second
//
// Decoding keeps the instant of AppendedAt (returned in UTC, without a
// monotonic reading) and returns empty Data/Extensions as nil.
//
// A BoltStore is safe for concurrent use.
type BoltStore struct {
	db   *bolt.DB
	path string
}

var (
	_ raft.LogStore    = (*BoltStore)(nil)
	_ raft.StableStore = (*BoltStore)(nil)
)

// OpenBoltStore opens (creating if needed) the bbolt file at path with mode
// 0600 and makes sure its buckets exist. bbolt holds an exclusive lock on the
// file until Close; a second opener gives up after one second.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      openTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open raft store %s: another agent may be running with this data dir: %w", path, err)
		}
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLogs, bucketConf} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	return &BoltStore{db: db, path: path}, nil
}

// Close releases the file and its lock.
func (s *BoltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close raft store %s: %w", s.path, err)
	}
	return nil
}

// FirstIndex returns the lowest stored log index, or 0 when there are none.
func (s *BoltStore) FirstIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			idx = decodeIndex(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the highest stored log index, or 0 when there are none.
func (s *BoltStore) LastIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			idx = decodeIndex(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads the log at index into log, or returns raft.ErrLogNotFound.
func (s *BoltStore) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(encodeIndex(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		// decodeLog copies out of v, which is only valid inside the tx.
		l, err := decodeLog(v)
		if err != nil {
			return fmt.Errorf("decode raft log %d: %w", index, err)
		}
		if l.Index != index {
			return fmt.Errorf("decode raft log %d: entry holds index %d", index, l.Index)
		}
		*log = l
		return nil
	})
}

// StoreLog stores one log entry.
func (s *BoltStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores log entries in a single transaction (one fsync).
func (s *BoltStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range logs {
			// bbolt keeps key and value until commit: fresh slices per entry.
			if err := b.Put(encodeIndex(l.Index), encodeLog(l)); err != nil {
				return fmt.Errorf("put log %d: %w", l.Index, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store raft logs: %w", err)
	}
	return nil
}

// DeleteRange deletes the logs with min <= index <= max.
func (s *BoltStore) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	minKey := encodeIndex(min)
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		// Seek again after each Delete rather than trusting Next after a
		// Delete to land on the following key.
		for k, _ := c.Seek(minKey); k != nil && decodeIndex(k) <= max; k, _ = c.Seek(minKey) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete raft logs %d-%d: %w", min, max, err)
	}
	return nil
}

// Set stores val under key.
func (s *BoltStore) Set(key, val []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConf).Put(key, val)
	})
	if err != nil {
		return fmt.Errorf("set raft stable key %q: %w", key, err)
	}
	return nil
}

// Get returns the value under key, or nil and ErrKeyNotFound ("not found")
// when the key is missing. A stored empty value comes back as a non-nil empty
// slice.
func (s *BoltStore) Get(key []byte) ([]byte, error) {
	var val []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketConf).Cursor().Seek(key)
		if k == nil || !bytes.Equal(k, key) {
			return ErrKeyNotFound
		}
		val = append([]byte{}, v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return val, nil
}

// SetUint64 stores val under key as 8 big-endian bytes.
func (s *BoltStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, encodeIndex(val))
}

// GetUint64 returns the value under key, or 0 and ErrKeyNotFound ("not
// found") when the key is missing.
func (s *BoltStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("get raft stable key %q: want 8 bytes for a uint64, have %d", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func encodeIndex(i uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), i)
}

func decodeIndex(k []byte) uint64 {
	return binary.BigEndian.Uint64(k)
}

const logFormatV1 = 1

func encodeLog(l *raft.Log) []byte {
	n := 1 + 3*binary.MaxVarintLen64 + 1 + 2*binary.MaxVarintLen64 + len(l.Data) + len(l.Extensions) + 1 + 2*binary.MaxVarintLen64
	b := make([]byte, 0, n)
	b = append(b, logFormatV1)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	b = append(b, l.Extensions...)
	if l.AppendedAt.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, l.AppendedAt.Unix())
	return binary.AppendUvarint(b, uint64(l.AppendedAt.Nanosecond()))
}

var errShortLog = errors.New("truncated entry")

// logDecoder reads the fields of an encoded log in order, remembering the
// first error.
type logDecoder struct {
	b   []byte
	err error
}

func (d *logDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errShortLog
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *logDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortLog
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *logDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortLog
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a copy (nil when empty) of the next length-prefixed field.
func (d *logDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShortLog
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b[:n])
	d.b = d.b[n:]
	return out
}

func decodeLog(b []byte) (raft.Log, error) {
	d := &logDecoder{b: b}
	if v := d.byte(); d.err == nil && v != logFormatV1 {
		return raft.Log{}, fmt.Errorf("unknown log format version %d", v)
	}
	var l raft.Log
	l.Index = d.uvarint()
	l.Term = d.uvarint()
	l.Type = raft.LogType(d.byte())
	l.Data = d.bytes()
	l.Extensions = d.bytes()
	switch flag := d.byte(); {
	case d.err != nil || flag == 0:
	case flag != 1:
		d.err = fmt.Errorf("bad appended-at flag %d", flag)
	default:
		sec := d.varint()
		nsec := d.uvarint()
		if d.err == nil && nsec >= uint64(time.Second) {
			d.err = fmt.Errorf("appended-at nanoseconds %d out of range", nsec)
		}
		l.AppendedAt = time.Unix(sec, int64(nsec)).UTC()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return raft.Log{}, d.err
	}
	return l, nil
}
