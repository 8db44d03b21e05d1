package main

// A minimal Redis client (RESP2), standard library only: enough for LPUSH,
// BRPOP, HSET, HGETALL and friends. api/resp.go and worker/resp.go are the
// same file; each service is its own build context.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// redisError is an error reply from the server ("-ERR ...").
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// errNil is returned for a nil reply (a missing key, a BRPOP timeout).
var errNil = errors.New("redis: nil")

// redis is one connection, redialled after an error. Commands are serialized.
type redis struct {
	addr string
	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
}

func newRedis(addr string) *redis { return &redis{addr: addr} }

// do sends one command and returns its reply: string, int64, nil-able
// []any, or an error. wait is how long the server may take to answer
// beyond the usual few seconds (a blocking command's timeout).
func (r *redis) do(wait time.Duration, args ...string) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("redis: connect %s: %w", r.addr, err)
		}
		r.conn, r.rd = c, bufio.NewReader(c)
	}
	_ = r.conn.SetDeadline(time.Now().Add(5*time.Second + wait))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(r.conn, b.String()); err != nil {
		r.close()
		return nil, fmt.Errorf("redis: %s: %w", args[0], err)
	}
	v, err := readReply(r.rd)
	var re redisError
	if err != nil && !errors.Is(err, errNil) && !errors.As(err, &re) {
		r.close() // the connection is in an unknown state
	}
	return v, err
}

func (r *redis) close() {
	if r.conn != nil {
		r.conn.Close()
		r.conn, r.rd = nil, nil
	}
}

func readReply(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("redis: empty reply")
	}
	switch kind, rest := line[0], line[1:]; kind {
	case '+':
		return rest, nil
	case '-':
		return nil, redisError(rest)
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("redis: bad bulk length %q", rest)
		}
		if n < 0 {
			return nil, errNil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("redis: bad array length %q", rest)
		}
		if n < 0 {
			return nil, errNil
		}
		out := make([]any, n)
		for i := range out {
			v, err := readReply(rd)
			if err != nil && !errors.Is(err, errNil) {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	default:
		return nil, fmt.Errorf("redis: unexpected reply %q", line)
	}
}

// integer runs a command with an integer reply.
func (r *redis) integer(args ...string) (int64, error) {
	v, err := r.do(0, args...)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("redis: %s: want an integer, got %T", args[0], v)
	}
	return n, nil
}

// array runs a command with an array reply of strings (nil elements are
// empty strings).
func (r *redis) array(wait time.Duration, args ...string) ([]string, error) {
	v, err := r.do(wait, args...)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("redis: %s: want an array, got %T", args[0], v)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		out[i], _ = e.(string)
	}
	return out, nil
}

// hash runs HGETALL.
func (r *redis) hash(key string) (map[string]string, error) {
	kv, err := r.array(0, "HGETALL", key)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m, nil
}
