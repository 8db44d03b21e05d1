package api

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func TestStreamFrames(t *testing.T) {
	a, b := net.Pipe()
	sa, sb := NewStream(a, nil), NewStream(b, nil)
	defer sa.Close()
	defer sb.Close()
	big := strings.Repeat("y", MaxFramePayload*2+3)
	go func() {
		_ = sa.WriteFrame(FrameResize, EncodeTermSize(TermSize{Height: 24, Width: 80}))
		_, _ = io.WriteString(sa.Writer(FrameStdout), big)
		_ = sa.WriteFrame(FrameStdinClose, nil)
		_ = sa.WriteFrame(FrameExit, EncodeExitCode(-2))
	}()
	want := []struct {
		t FrameType
		n int
	}{{FrameResize, 4}, {FrameStdout, MaxFramePayload}, {FrameStdout, MaxFramePayload}, {FrameStdout, 3}, {FrameStdinClose, 0}, {FrameExit, 4}}
	var out bytes.Buffer
	for i, w := range want {
		typ, p, err := sb.ReadFrame()
		if err != nil || typ != w.t || len(p) != w.n {
			t.Fatalf("frame %d: type %d, %d bytes, %v; want type %d, %d bytes", i, typ, len(p), err, w.t, w.n)
		}
		switch typ {
		case FrameResize:
			if ts, err := DecodeTermSize(p); err != nil || ts != (TermSize{Height: 24, Width: 80}) {
				t.Errorf("size %+v, %v", ts, err)
			}
		case FrameStdout:
			out.Write(p)
		case FrameExit:
			if code, err := DecodeExitCode(p); err != nil || code != -2 {
				t.Errorf("exit code %d, %v; want -2", code, err)
			}
		}
	}
	if out.String() != big {
		t.Errorf("stdout: %d bytes, want %d", out.Len(), len(big))
	}
}

func TestStreamRefusesOversizedFrames(t *testing.T) {
	var buf bytes.Buffer
	s := NewStream(nopCloser{&buf}, nil)
	if err := s.WriteFrame(FrameStdout, make([]byte, MaxFramePayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("WriteFrame of %d bytes = %v, want ErrFrameTooLarge", MaxFramePayload+1, err)
	}
	buf.Write([]byte{byte(FrameStdout), 0xff, 0, 0, 0}) // announces 4 GiB
	if _, _, err := s.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame of an oversized frame = %v, want ErrFrameTooLarge", err)
	}
	buf.Reset()
	buf.Write([]byte{byte(FrameStdout), 0, 0, 0, 9, 'a'}) // cut short
	if _, _, err := NewStream(nopCloser{&buf}, nil).ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame of a truncated frame = %v, want io.ErrUnexpectedEOF", err)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}} {
		if _, err := DecodeTermSize(bad); err == nil {
			t.Errorf("DecodeTermSize(%v) succeeded", bad)
		}
		if _, err := DecodeExitCode(bad); err == nil {
			t.Errorf("DecodeExitCode(%v) succeeded", bad)
		}
	}
}

type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }
