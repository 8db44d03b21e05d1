package raftstore

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/devhq/dev/cluster/pki"
)

// tlsStreamLayer carries raft RPCs over mutual TLS: the listener requires a
// client certificate of the cluster CA and dials present this node's.
// hashicorp/raft gives each accepted connection a goroutine and 256 KiB of
// buffers until the peer speaks, so the listener hands it only connections
// that completed the handshake, within pki.HandshakeLimits.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

func newTLSStreamLayer(bind string, advertise net.Addr, server, client *tls.Config, lim pki.HandshakeLimits, log *slog.Logger) (*tlsStreamLayer, error) {
	tcp, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen raft on %s: %w", bind, err)
	}
	ln := pki.NewHandshakeListener(tcp, server, lim, log)
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, client: client}, nil
}

func (l *tlsStreamLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tlsStreamLayer) Close() error              { return l.ln.Close() }
func (l *tlsStreamLayer) Addr() net.Addr            { return l.advertise }

// Dial connects to a peer and completes the TLS handshake within timeout.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), l.client)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	return conn, nil
}
