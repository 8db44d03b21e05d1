package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The interactive stream of `dev exec` and `dev run`.
//
// The client sends POST /v1/pods/{name}/exec (ExecRequest) or POST
// /v1/projects/{project}/services/{service}/run (RunRequest) with
// "Connection: Upgrade" and "Upgrade: dev-stream". The agent answers
// "101 Switching Protocols" (any error before that is an ordinary JSON
// error), and from then on both sides exchange frames on the connection:
//
//	type    1 byte  (FrameStdin ... FrameError)
//	length  4 bytes big endian, at most MaxFramePayload
//	payload length bytes
//
// The client sends FrameStdin data, one FrameStdinClose at the end of its
// input, and FrameResize (height, width: two big-endian uint16) whenever its
// terminal changes size. The agent sends FrameStdout and FrameStderr data
// (only FrameStdout with a TTY, which merges both) and ends with exactly one
// FrameExit (the exit code: a big-endian int32) or FrameError (a message:
// the command could not run), then closes its side. A node that receives a
// stream for a pod on another node relays the bytes unchanged to that
// node's API over mutual TLS.

// StreamProtocol is the Upgrade token of the interactive stream.
const StreamProtocol = "dev-stream"

// Response headers of the 101 answer to a run.
const (
	HeaderPod  = "Dev-Pod"  // the one-off pod's name
	HeaderNode = "Dev-Node" // the node that runs it
)

// FrameType is the first byte of every frame.
type FrameType byte

// Frame types. Values are on the wire: append only.
const (
	FrameStdin      FrameType = 1 // client -> agent: input bytes
	FrameStdout     FrameType = 2 // agent -> client
	FrameStderr     FrameType = 3 // agent -> client
	FrameResize     FrameType = 4 // client -> agent: TermSize
	FrameStdinClose FrameType = 5 // client -> agent: end of input
	FrameExit       FrameType = 6 // agent -> client: exit code, last frame
	FrameError      FrameType = 7 // agent -> client: error message, last frame
)

// MaxFramePayload bounds a frame's payload; writers split larger data.
const MaxFramePayload = 64 << 10

// TermSize is a terminal size in character cells.
type TermSize struct {
	Height uint16
	Width  uint16
}

// EncodeTermSize is the payload of a FrameResize.
func EncodeTermSize(s TermSize) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, s.Height)
	binary.BigEndian.PutUint16(b[2:], s.Width)
	return b
}

// DecodeTermSize parses a FrameResize payload.
func DecodeTermSize(b []byte) (TermSize, error) {
	if len(b) != 4 {
		return TermSize{}, fmt.Errorf("decode terminal size: %d bytes, want 4", len(b))
	}
	return TermSize{Height: binary.BigEndian.Uint16(b), Width: binary.BigEndian.Uint16(b[2:])}, nil
}

// EncodeExitCode is the payload of a FrameExit.
func EncodeExitCode(code int) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(int32(code)))
	return b
}

// DecodeExitCode parses a FrameExit payload.
func DecodeExitCode(b []byte) (int, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("decode exit code: %d bytes, want 4", len(b))
	}
	return int(int32(binary.BigEndian.Uint32(b))), nil
}

// ErrFrameTooLarge is returned for a frame whose length exceeds
// MaxFramePayload.
var ErrFrameTooLarge = errors.New("stream frame too large")

// Stream reads and writes frames on a connection. Writes are safe from
// several goroutines; reads are not.
type Stream struct {
	conn io.ReadWriteCloser
	r    *bufio.Reader
	wmu  sync.Mutex
}

// NewStream wraps an upgraded connection. r, when not nil, is a reader of the
// connection that may hold bytes already buffered (a hijacked HTTP server
// connection's); else the connection itself is read.
func NewStream(conn io.ReadWriteCloser, r *bufio.Reader) *Stream {
	if r == nil {
		r = bufio.NewReaderSize(conn, 32<<10)
	}
	return &Stream{conn: conn, r: r}
}

// WriteFrame sends one frame; payloads above MaxFramePayload are an error.
func (s *Stream) WriteFrame(t FrameType, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return ErrFrameTooLarge
	}
	b := make([]byte, 5+len(payload))
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:5], uint32(len(payload)))
	copy(b[5:], payload)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

// ReadFrame returns the next frame. The payload is a fresh slice.
func (s *Stream) ReadFrame() (FrameType, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(s.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return FrameType(h[0]), p, nil
}

// Writer returns an io.Writer that sends what is written as frames of type t.
func (s *Stream) Writer(t FrameType) io.Writer { return frameWriter{s, t} }

// Close closes the connection.
func (s *Stream) Close() error { return s.conn.Close() }

// CloseWrite closes the sending side only, when the connection supports it
// (TCP, TLS, unix sockets), so that the peer reads everything sent before
// it closes in turn.
func (s *Stream) CloseWrite() error {
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type frameWriter struct {
	s *Stream
	t FrameType
}

func (w frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxFramePayload)]
		if err := w.s.WriteFrame(w.t, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// IO connects an interactive process (exec, run) to its client, on the node
// that runs it.
type IO struct {
	// Stdin is nil when the client attaches no input.
	Stdin  io.Reader
	Stdout io.Writer
	// Stderr is unused with a TTY: the terminal merges it into Stdout.
	Stderr io.Writer
	// Resize delivers the client's terminal sizes (TTY only); nil for none.
	Resize <-chan TermSize
}
