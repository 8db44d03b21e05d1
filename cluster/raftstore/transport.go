package raftstore

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer carries raft RPCs over mutual TLS: it accepts from a
// listener whose connections completed their handshake (requiring a node
// certificate of the cluster CA), and dials presenting this node's.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

func newTLSStreamLayer(ln net.Listener, advertise net.Addr, client *tls.Config) *tlsStreamLayer {
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, client: client}
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
