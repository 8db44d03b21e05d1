package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolterrors "go.etcd.io/bbolt/errors"
)

func openTestStore(t testing.TB) (*BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatalf("OpenBoltStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// storeIndexes stores a command log with term 1 at each index.
func storeIndexes(t *testing.T, s *BoltStore, idx ...uint64) {
	t.Helper()
	logs := make([]*raft.Log, 0, len(idx))
	for _, i := range idx {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprint(i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// presentIndexes returns which indexes in [from, to] GetLog finds.
func presentIndexes(t *testing.T, s *BoltStore, from, to uint64) []uint64 {
	t.Helper()
	var out []uint64
	for i := from; i <= to; i++ {
		var l raft.Log
		switch err := s.GetLog(i, &l); {
		case err == nil:
			out = append(out, i)
		case !errors.Is(err, raft.ErrLogNotFound):
			t.Fatalf("GetLog(%d): %v", i, err)
		}
	}
	return out
}

func TestOpenBoltStoreFileMode(t *testing.T) {
	_, path := openTestStore(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %v, want 0600", got)
	}
}

func TestLogRoundTrip(t *testing.T) {
	appended := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))
	big := bytes.Repeat([]byte("abcdefgh"), 16<<10)
	tests := []struct {
		name string
		log  raft.Log
	}{
		{name: "every field", log: raft.Log{Index: 1, Term: 2, Type: raft.LogCommand, Data: []byte("data"), Extensions: []byte("ext"), AppendedAt: appended}},
		{name: "zero time and no payload", log: raft.Log{Index: 2, Term: 2, Type: raft.LogNoop}},
		{name: "configuration type", log: raft.Log{Index: 3, Term: 3, Type: raft.LogConfiguration, Data: []byte{0, 1, 2, 255}}},
		{name: "large data", log: raft.Log{Index: 4, Term: 3, Type: raft.LogCommand, Data: big, AppendedAt: appended}},
		{name: "pre-epoch time", log: raft.Log{Index: 5, Term: 4, Type: raft.LogBarrier, AppendedAt: time.Date(1066, 10, 14, 9, 0, 0, 1, time.UTC)}},
		{name: "max values", log: raft.Log{Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogType(255), Extensions: []byte{0}}},
	}
	s, _ := openTestStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.log
			if err := s.StoreLog(&in); err != nil {
				t.Fatalf("StoreLog: %v", err)
			}
			// Start from a dirty struct: GetLog must overwrite every field.
			got := raft.Log{Index: 99, Term: 99, Data: []byte("stale"), Extensions: []byte("stale"), AppendedAt: time.Now()}
			if err := s.GetLog(tt.log.Index, &got); err != nil {
				t.Fatalf("GetLog: %v", err)
			}
			if !got.AppendedAt.Equal(tt.log.AppendedAt) {
				t.Errorf("AppendedAt = %v, want %v", got.AppendedAt, tt.log.AppendedAt)
			}
			got.AppendedAt, in.AppendedAt = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, in) {
				t.Errorf("GetLog = %+v, want %+v", got, in)
			}
		})
	}
}

func TestDecodeLogRejectsDamage(t *testing.T) {
	enc := encodeLog(&raft.Log{Index: 7, Term: 3, Type: raft.LogCommand, Data: []byte("hello"), Extensions: []byte("x"), AppendedAt: time.Unix(1700000000, 5)})
	if _, err := decodeLog(enc); err != nil {
		t.Fatalf("decodeLog(valid): %v", err)
	}
	for n := 0; n < len(enc); n++ {
		if _, err := decodeLog(enc[:n]); err == nil {
			t.Errorf("decodeLog(first %d of %d bytes) = nil error", n, len(enc))
		}
	}
	if _, err := decodeLog(append(append([]byte{}, enc...), 0)); err == nil {
		t.Error("decodeLog(trailing byte) = nil error")
	}
	bad := append([]byte{}, enc...)
	bad[0] = 9
	if _, err := decodeLog(bad); err == nil {
		t.Error("decodeLog(unknown version) = nil error")
	}
}

func TestFirstLastIndex(t *testing.T) {
	tests := []struct {
		name      string
		store     []uint64
		wantFirst uint64
		wantLast  uint64
	}{
		{name: "empty", wantFirst: 0, wantLast: 0},
		{name: "one", store: []uint64{5}, wantFirst: 5, wantLast: 5},
		{name: "contiguous", store: seq(1, 10), wantFirst: 1, wantLast: 10},
		{name: "gap and unordered batch", store: []uint64{300, 4, 256, 255}, wantFirst: 4, wantLast: 300},
		{name: "byte order is index order", store: []uint64{1 << 8, 1 << 56, 255}, wantFirst: 255, wantLast: 1 << 56},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTestStore(t)
			storeIndexes(t, s, tt.store...)
			first, err := s.FirstIndex()
			if err != nil || first != tt.wantFirst {
				t.Errorf("FirstIndex = %d, %v; want %d", first, err, tt.wantFirst)
			}
			last, err := s.LastIndex()
			if err != nil || last != tt.wantLast {
				t.Errorf("LastIndex = %d, %v; want %d", last, err, tt.wantLast)
			}
		})
	}
}

func TestGetLogNotFound(t *testing.T) {
	s, _ := openTestStore(t)
	storeIndexes(t, s, 1, 2, 4)
	for _, idx := range []uint64{0, 3, 5, math.MaxUint64} {
		var l raft.Log
		if err := s.GetLog(idx, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("GetLog(%d) = %v, want raft.ErrLogNotFound", idx, err)
		}
	}
}

func TestDeleteRange(t *testing.T) {
	tests := []struct {
		name      string
		min, max  uint64
		want      []uint64
		wantFirst uint64
		wantLast  uint64
	}{
		{name: "prefix", min: 1, max: 5, want: seq(6, 20), wantFirst: 6, wantLast: 20},
		{name: "suffix", min: 15, max: 20, want: seq(1, 14), wantFirst: 1, wantLast: 14},
		{name: "middle inclusive", min: 5, max: 7, want: append(seq(1, 4), seq(8, 20)...), wantFirst: 1, wantLast: 20},
		{name: "single", min: 10, max: 10, want: append(seq(1, 9), seq(11, 20)...), wantFirst: 1, wantLast: 20},
		{name: "all", min: 1, max: 20, wantFirst: 0, wantLast: 0},
		{name: "wider than stored", min: 0, max: math.MaxUint64, wantFirst: 0, wantLast: 0},
		{name: "beyond last", min: 21, max: 30, want: seq(1, 20), wantFirst: 1, wantLast: 20},
		{name: "min above max is a no-op", min: 10, max: 5, want: seq(1, 20), wantFirst: 1, wantLast: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTestStore(t)
			storeIndexes(t, s, seq(1, 20)...)
			if err := s.DeleteRange(tt.min, tt.max); err != nil {
				t.Fatalf("DeleteRange: %v", err)
			}
			if got := presentIndexes(t, s, 0, 25); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("present = %v, want %v", got, tt.want)
			}
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			if first != tt.wantFirst || last != tt.wantLast {
				t.Errorf("First/LastIndex = %d/%d, want %d/%d", first, last, tt.wantFirst, tt.wantLast)
			}
		})
	}
}

// TestDeleteRangeMany spans many bbolt pages, where deleting under a cursor
// is most likely to skip keys.
func TestDeleteRangeMany(t *testing.T) {
	s, _ := openTestStore(t)
	const n = 5000
	logs := make([]*raft.Log, 0, n)
	for i := uint64(1); i <= n; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: bytes.Repeat([]byte{'x'}, 100)})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, n-10); err != nil {
		t.Fatal(err)
	}
	if got, want := presentIndexes(t, s, 0, n+1), seq(n-9, n); !reflect.DeepEqual(got, want) {
		t.Errorf("present = %v, want %v", got, want)
	}
}

func TestStableStore(t *testing.T) {
	s, _ := openTestStore(t)
	if err := s.Set([]byte("bytes"), []byte("value")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("empty"), []byte{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("over"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("over"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("u64"), math.MaxUint64-1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("zero"), 0); err != nil {
		t.Fatal(err)
	}

	getTests := []struct {
		name    string
		key     string
		want    []byte
		wantErr string
	}{
		{name: "value", key: "bytes", want: []byte("value")},
		{name: "empty value is not missing", key: "empty", want: []byte{}},
		{name: "overwritten", key: "over", want: []byte("new")},
		{name: "missing", key: "nope", wantErr: "not found"},
		{name: "prefix of a key is missing", key: "byte", wantErr: "not found"},
	}
	for _, tt := range getTests {
		t.Run("Get/"+tt.name, func(t *testing.T) {
			got, err := s.Get([]byte(tt.key))
			if tt.wantErr != "" {
				// raft compares err.Error() with "not found" and tests the
				// value against nil.
				if err == nil || err.Error() != tt.wantErr || got != nil {
					t.Fatalf("Get(%q) = %q, %v; want nil, %q", tt.key, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got == nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("Get(%q) = %q, %v; want %q", tt.key, got, err, tt.want)
			}
		})
	}

	u64Tests := []struct {
		name    string
		key     string
		want    uint64
		wantErr string
	}{
		{name: "value", key: "u64", want: math.MaxUint64 - 1},
		{name: "zero", key: "zero", want: 0},
		{name: "missing", key: "nope", wantErr: "not found"},
		{name: "not eight bytes", key: "bytes", wantErr: "want 8 bytes"},
	}
	for _, tt := range u64Tests {
		t.Run("GetUint64/"+tt.name, func(t *testing.T) {
			got, err := s.GetUint64([]byte(tt.key))
			switch {
			case tt.wantErr == "not found":
				if err == nil || err.Error() != "not found" || got != 0 {
					t.Fatalf("GetUint64(%q) = %d, %v; want 0, exactly \"not found\"", tt.key, got, err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("GetUint64(%q) = %d, %v; want error containing %q", tt.key, got, err, tt.wantErr)
				}
			case err != nil || got != tt.want:
				t.Fatalf("GetUint64(%q) = %d, %v; want %d", tt.key, got, err, tt.want)
			}
		})
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	want := raft.Log{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte("d"), Extensions: []byte("e"), AppendedAt: time.Unix(1700000000, 42).UTC()}
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}, &want}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 2 || last != 3 {
		t.Errorf("First/LastIndex = %d/%d, want 2/3", first, last)
	}
	var got raft.Log
	if err := s.GetLog(3, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetLog(3) = %+v, %v; want %+v", got, err, want)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Errorf("GetUint64(CurrentTerm) = %d, %v; want 2", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "node1" {
		t.Errorf("Get(LastVoteCand) = %q, %v; want node1", cand, err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	_, path := openTestStore(t)
	start := time.Now()
	s2, err := OpenBoltStore(path)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second OpenBoltStore of an open file succeeded")
	}
	wantMsg := "open raft store " + path + ": another agent may be running with this data dir: "
	if !strings.HasPrefix(err.Error(), wantMsg) {
		t.Errorf("error = %q, want prefix %q", err, wantMsg)
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		t.Errorf("error %v does not wrap bbolt's ErrTimeout", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("second open took %v, want about %v", elapsed, openTimeout)
	}
}

// countingFSM records the data of every applied command in order.
type countingFSM struct {
	mu      sync.Mutex
	applied []string
}

func (f *countingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return len(f.applied)
}

func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fsmSnapshot(append([]string(nil), f.applied...)), nil
}

func (f *countingFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var applied []string
	if err := json.NewDecoder(rc).Decode(&applied); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = applied
	return nil
}

func (f *countingFSM) entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...)
}

type fsmSnapshot []string

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testRaftConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = "node1"
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotInterval = time.Hour // snapshots only when the test asks
	c.SnapshotThreshold = math.MaxUint64
	c.TrailingLogs = 2 // a user snapshot compacts the log through DeleteRange
	c.LogOutput = io.Discard
	return c
}

// startRaft runs a single-node raft over store and waits for it to lead.
func startRaft(t *testing.T, store *BoltStore, snaps raft.SnapshotStore, fsm raft.FSM) *raft.Raft {
	t.Helper()
	_, trans := raft.NewInmemTransport("node1")
	r, err := raft.NewRaft(testRaftConfig(), fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	waitFor(t, 5*time.Second, "leadership", func() bool { return r.State() == raft.Leader })
	return r
}

func applyAll(t *testing.T, r *raft.Raft, entries []string) {
	t.Helper()
	for _, e := range entries {
		if err := r.Apply([]byte(e), 2*time.Second).Error(); err != nil {
			t.Fatalf("Apply(%q): %v", e, err)
		}
	}
}

func TestRaftSingleNodeRestart(t *testing.T) {
	tests := []struct {
		name     string
		snapshot bool // take a user snapshot (compacting the log) between batches
	}{
		{name: "log replay"},
		{name: "snapshot then log replay", snapshot: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "raft.db")
			snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			store, err := OpenBoltStore(path)
			if err != nil {
				t.Fatal(err)
			}
			_, trans := raft.NewInmemTransport("node1")
			if has, err := raft.HasExistingState(store, store, snaps); err != nil || has {
				t.Fatalf("HasExistingState on a fresh store = %v, %v; want false, nil", has, err)
			}
			boot := raft.Configuration{Servers: []raft.Server{{ID: "node1", Address: trans.LocalAddr()}}}
			if err := raft.BootstrapCluster(testRaftConfig(), store, store, snaps, trans, boot); err != nil {
				t.Fatalf("BootstrapCluster: %v", err)
			}

			fsm1 := &countingFSM{}
			r := startRaft(t, store, snaps, fsm1)
			var want []string
			for i := range 10 {
				want = append(want, fmt.Sprintf("a%d", i))
			}
			applyAll(t, r, want[:5])
			if tt.snapshot {
				if err := r.Snapshot().Error(); err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
			}
			applyAll(t, r, want[5:])
			if got := fsm1.entries(); !reflect.DeepEqual(got, want) {
				t.Fatalf("first run applied %v, want %v", got, want)
			}
			lastBefore := r.LastIndex()
			if err := r.Shutdown().Error(); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if tt.snapshot {
				// TrailingLogs=2: the snapshot must have deleted the head of the log.
				if first, _ := store.FirstIndex(); first <= 1 {
					t.Errorf("FirstIndex after snapshot = %d, want the log compacted", first)
				}
			}
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}

			store, err = OpenBoltStore(path)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			t.Cleanup(func() { _ = store.Close() })
			if last, _ := store.LastIndex(); last != lastBefore {
				t.Errorf("LastIndex after reopen = %d, want %d", last, lastBefore)
			}
			if has, err := raft.HasExistingState(store, store, snaps); err != nil || !has {
				t.Fatalf("HasExistingState after restart = %v, %v; want true, nil", has, err)
			}
			term, err := store.GetUint64([]byte("CurrentTerm"))
			if err != nil || term == 0 {
				t.Fatalf("CurrentTerm = %d, %v; want > 0", term, err)
			}

			fsm2 := &countingFSM{}
			r2 := startRaft(t, store, snaps, fsm2)
			waitFor(t, 5*time.Second, "FSM replay", func() bool { return len(fsm2.entries()) >= len(want) })
			if got := fsm2.entries(); !reflect.DeepEqual(got, want) {
				t.Fatalf("replayed %v, want %v", got, want)
			}
			// The restarted node keeps working on top of the reopened store.
			applyAll(t, r2, []string{"b0"})
			if got := fsm2.entries(); got[len(got)-1] != "b0" || len(got) != len(want)+1 {
				t.Fatalf("after restart applied %v, want %v then b0", got, want)
			}
			if t2, _ := store.GetUint64([]byte("CurrentTerm")); t2 <= term {
				t.Errorf("CurrentTerm after restart = %d, want > %d", t2, term)
			}
			if err := r2.Shutdown().Error(); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

// BenchmarkStoreLogs stores batches of 64 entries of 256 bytes; each op is
// one StoreLogs call, i.e. one bbolt transaction and fsync.
func BenchmarkStoreLogs(b *testing.B) {
	const batch = 64
	s, _ := openTestStore(b)
	data := bytes.Repeat([]byte{'x'}, 256)
	now := time.Now()
	logs := make([]*raft.Log, batch)
	for i := range logs {
		logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: now}
	}
	next := uint64(1)
	for b.Loop() {
		for _, l := range logs {
			l.Index = next
			next++
		}
		if err := s.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(next-1), "ns/entry")
}
