// Package gossip carries cluster membership and node tags over encrypted serf/memberlist gossip.
package gossip

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

const (
	// DefaultPort is the gossip port (tcp and udp) used when Config.BindPort is 0.
	DefaultPort = 7946
	// AnyPort as Config.BindPort binds a free port chosen by the kernel
	// (tests); Local().Port tells which one.
	AnyPort = -1
	// DefaultReconnectTimeout is how long failed and left members are kept
	// before they are reaped, when Config.ReconnectTimeout is 0.
	DefaultReconnectTimeout = 24 * time.Hour
	// KeySize is the length of Config.Key: gossip is encrypted with AES-256.
	KeySize = 32
)

// Member statuses, as in Member.Status.
const (
	StatusAlive   = "alive"
	StatusLeaving = "leaving"
	StatusLeft    = "left"
	StatusFailed  = "failed"
)

// ErrNotRunning is returned by the methods that need the gossip layer up
// (before Ready is closed, or after Run has returned).
var ErrNotRunning = errors.New("gossip is not running")

const (
	// eventBuffer is the capacity of the Events channel.
	eventBuffer = 256
	// serfEventBuffer is the capacity of the channel serf writes to. Serf
	// sends on it while holding its member lock, so it is generous.
	serfEventBuffer = 2048
	// slowConsumerWarning is how long a blocked Events send waits before
	// it is logged.
	slowConsumerWarning = time.Second
)

// Config configures one gossip member.
type Config struct {
	// NodeName is the unique name of this node in the cluster. Required.
	NodeName string
	// BindAddr is the IP to listen on ("10.99.0.11", "127.0.0.1"); empty
	// means all addresses ("0.0.0.0").
	BindAddr string
	// BindPort is the tcp+udp port: 0 means DefaultPort, AnyPort picks a
	// free one.
	BindPort int
	// AdvertiseAddr is the IP other members use to reach this one; empty
	// means BindAddr, or a private address of this host when BindAddr is
	// unspecified.
	AdvertiseAddr string
	// AdvertisePort defaults to the bound port (and is ignored with AnyPort).
	AdvertisePort int
	// Tags are this node's initial tags (encoded, they must fit in 512 bytes).
	Tags map[string]string
	// Key is the 32-byte AES-256 gossip key (see DeriveKey). Required:
	// members with different keys cannot talk to each other.
	Key []byte
	// Fast tunes the LAN timers for tests: a crashed member is declared
	// failed within about a second instead of several.
	Fast bool
	// ReconnectTimeout is how long failed (and left) members are kept, and
	// retried, before they are reaped (EventReap). Default 24h.
	ReconnectTimeout time.Duration
	// Log receives the component's logs; serf's and memberlist's own logs
	// are forwarded to it at debug level (their warnings and errors at warn).
	Log *slog.Logger
}

// EventType says what happened to the members of an Event.
type EventType int

// Event types.
const (
	EventJoin   EventType = iota + 1 // a member joined, or came back after failing or leaving
	EventLeave                       // a member left gracefully (Leave)
	EventFail                        // a member stopped answering
	EventUpdate                      // a member's tags changed
	EventReap                        // a failed or left member was forgotten after ReconnectTimeout
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventUpdate:
		return "update"
	case EventReap:
		return "reap"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Member is one node as gossip sees it.
type Member struct {
	Name   string
	Addr   netip.Addr
	Port   uint16
	Tags   map[string]string
	Status string // StatusAlive, StatusLeaving, StatusLeft or StatusFailed
}

// Event reports a change of some members. Events about the local node are
// delivered too (its own EventJoin first).
type Event struct {
	Type    EventType
	Members []Member
}

// Gossip is one member of the gossip cluster.
type Gossip struct {
	cfg    Config
	log    *slog.Logger
	events chan Event
	ready  chan struct{}

	started atomic.Bool
	serf    atomic.Pointer[serf.Serf] // set while running
	// keyring is memberlist's, made here so that SetKey can change it
	// locally: serf's KeyManager would ask every member by gossip.
	keyring *memberlist.Keyring
}

// DeriveKey returns the gossip key for a cluster secret: the SHA-256 of the
// secret, so every node given the same secret (e.g. the join token) derives
// the same 32-byte key. There is no salt or stretching: the secret must be
// random, not a password.
func DeriveKey(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// New checks the configuration and returns a Gossip that Run starts.
func New(cfg Config) (*Gossip, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("configure gossip: node name is required")
	}
	if len(cfg.Key) != KeySize {
		return nil, fmt.Errorf("configure gossip: key is %d bytes, want %d (derive one from the cluster secret with DeriveKey)", len(cfg.Key), KeySize)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	bind, err := netip.ParseAddr(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("configure gossip: bind address: %w", err)
	}
	if cfg.AdvertiseAddr == "" && !bind.IsUnspecified() {
		cfg.AdvertiseAddr = cfg.BindAddr
	}
	if cfg.AdvertiseAddr != "" {
		adv, err := netip.ParseAddr(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("configure gossip: advertise address: %w", err)
		}
		if adv.IsUnspecified() {
			return nil, fmt.Errorf("configure gossip: advertise address %s is unspecified: give an address other nodes can reach", adv)
		}
	}
	switch {
	case cfg.BindPort == 0:
		cfg.BindPort = DefaultPort
	case cfg.BindPort == AnyPort:
	case cfg.BindPort < 0 || cfg.BindPort > 65535:
		return nil, fmt.Errorf("configure gossip: bind port %d out of range", cfg.BindPort)
	}
	if cfg.AdvertisePort < 0 || cfg.AdvertisePort > 65535 {
		return nil, fmt.Errorf("configure gossip: advertise port %d out of range", cfg.AdvertisePort)
	}
	switch {
	case cfg.ReconnectTimeout == 0:
		cfg.ReconnectTimeout = DefaultReconnectTimeout
	case cfg.ReconnectTimeout < 0:
		return nil, fmt.Errorf("configure gossip: negative reconnect timeout %s", cfg.ReconnectTimeout)
	}
	cfg.Key = slices.Clone(cfg.Key)
	keyring, err := memberlist.NewKeyring(nil, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("configure gossip: %w", err)
	}
	cfg.Tags = maps.Clone(cfg.Tags)
	if cfg.Tags == nil {
		cfg.Tags = map[string]string{}
	}
	logger := cfg.Log
	if logger == nil {
		logger = slog.Default()
	}
	return &Gossip{
		cfg:     cfg,
		log:     logger.With("component", "gossip", "node", cfg.NodeName),
		events:  make(chan Event, eventBuffer),
		ready:   make(chan struct{}),
		keyring: keyring,
	}, nil
}

// serfConfig builds serf's and memberlist's configuration.
func (g *Gossip) serfConfig(eventCh chan<- serf.Event) *serf.Config {
	ml := memberlist.DefaultLANConfig()
	ml.Name = g.cfg.NodeName
	ml.BindAddr = g.cfg.BindAddr
	ml.BindPort = max(g.cfg.BindPort, 0) // memberlist picks a free port for 0
	ml.AdvertiseAddr = g.cfg.AdvertiseAddr
	ml.AdvertisePort = g.cfg.AdvertisePort
	if ml.AdvertisePort == 0 {
		ml.AdvertisePort = ml.BindPort
	}
	ml.Keyring = g.keyring
	ml.GossipVerifyIncoming = true
	ml.GossipVerifyOutgoing = true

	logger := log.New(&logWriter{log: g.log}, "", 0)
	ml.LogOutput = nil
	ml.Logger = logger

	sc := serf.DefaultConfig()
	sc.NodeName = g.cfg.NodeName
	sc.Tags = maps.Clone(g.cfg.Tags)
	sc.EventCh = eventCh
	sc.LogOutput = nil
	sc.Logger = logger
	sc.SnapshotPath = "" // membership state lives in raft
	sc.RejoinAfterLeave = true
	sc.ReconnectTimeout = g.cfg.ReconnectTimeout
	sc.TombstoneTimeout = g.cfg.ReconnectTimeout
	sc.DisableCoordinates = true

	// A LAN cluster: probe twice as often as memberlist's LAN defaults and
	// suspect for shorter (1.5s instead of 4s with few nodes), so that a
	// dead node is declared failed in ~2s and its pods move within the
	// grace period plus a few seconds.
	ml.ProbeInterval = 500 * time.Millisecond
	ml.ProbeTimeout = 250 * time.Millisecond
	ml.SuspicionMult = 3
	ml.GossipInterval = 100 * time.Millisecond
	// A suspicion lasts up to SuspicionMaxTimeoutMult times its minimum
	// while it waits for other members to confirm it. In a 3-node cluster
	// whose other survivor is slow to confirm (its health awareness raised
	// by a partition that just healed) that stretched detection to ~10s in
	// 2 of 6 failover runs. Capped at 2x (3s here), and with awareness
	// slowing probes at most 4x (not 8x), a dead node is declared failed
	// in 3-5s; a live one still has 3s to refute a suspicion.
	ml.SuspicionMaxTimeoutMult = 2
	ml.AwarenessMaxMultiplier = 4
	if g.cfg.Fast {
		ml.ProbeInterval = 200 * time.Millisecond
		ml.ProbeTimeout = 100 * time.Millisecond
		ml.SuspicionMult = 2
		ml.GossipInterval = 50 * time.Millisecond
		ml.PushPullInterval = 5 * time.Second
		ml.TCPTimeout = time.Second
		ml.GossipToTheDeadTime = 5 * time.Second

		sc.ReapInterval = 500 * time.Millisecond
		sc.ReconnectInterval = time.Second
		sc.BroadcastTimeout = 2 * time.Second
		sc.LeavePropagateDelay = 300 * time.Millisecond
		sc.FlapTimeout = 5 * time.Second
	}
	sc.MemberlistConfig = ml
	return sc
}

// Run starts serf (binding the gossip port), delivers its member events on
// Events until ctx ends, then shuts serf down without leaving: the other
// members see a failure, as after a crash (call Leave first for a graceful
// departure). Run closes the Events channel before it returns, and the ports
// are free once it has returned. A Gossip runs once.
func (g *Gossip) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("run gossip: already started")
	}
	defer close(g.events)

	serfCh := make(chan serf.Event, serfEventBuffer)
	s, err := serf.Create(g.serfConfig(serfCh))
	if err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	g.serf.Store(s)
	local := toMember(s.LocalMember())
	g.log.Info("gossip started", "addr", local.Addr, "port", local.Port)
	close(g.ready)

	fwdCtx, stopForward := context.WithCancel(context.Background())
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		g.forward(fwdCtx, serfCh)
	}()

	select {
	case <-ctx.Done():
	case <-s.ShutdownCh():
	}
	g.serf.Store(nil)
	err = s.Shutdown() // no Leave: a crash-like stop; Leave is explicit
	stopForward()
	<-forwarded
	if err != nil {
		return fmt.Errorf("stop gossip: %w", err)
	}
	g.log.Info("gossip stopped")
	return nil
}

// forward translates serf's member events into Events. It never drops one:
// when the consumer is slow it blocks (and with it serf's event delivery),
// logging a warning after slowConsumerWarning.
func (g *Gossip) forward(ctx context.Context, in <-chan serf.Event) {
	for {
		var se serf.Event
		select {
		case se = <-in:
		case <-ctx.Done():
			return
		}
		me, ok := se.(serf.MemberEvent)
		if !ok {
			continue // user events and queries are not used
		}
		ev, ok := toEvent(me)
		if !ok {
			continue
		}
		select {
		case g.events <- ev:
			continue
		default:
		}
		start := time.Now()
		timer := time.NewTimer(slowConsumerWarning)
		select {
		case g.events <- ev:
			timer.Stop()
			continue
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		g.log.Warn("gossip event consumer is slow: serf events are held back", "event", ev.Type, "waited", time.Since(start).Round(time.Millisecond), "pending", len(in))
		select {
		case g.events <- ev:
			g.log.Warn("gossip event consumer caught up", "event", ev.Type, "waited", time.Since(start).Round(time.Millisecond))
		case <-ctx.Done():
			return
		}
	}
}

func toEvent(me serf.MemberEvent) (Event, bool) {
	var t EventType
	switch me.Type {
	case serf.EventMemberJoin:
		t = EventJoin
	case serf.EventMemberLeave:
		t = EventLeave
	case serf.EventMemberFailed:
		t = EventFail
	case serf.EventMemberUpdate:
		t = EventUpdate
	case serf.EventMemberReap:
		t = EventReap
	default:
		return Event{}, false
	}
	ev := Event{Type: t, Members: make([]Member, len(me.Members))}
	for i, m := range me.Members {
		ev.Members[i] = toMember(m)
	}
	return ev, true
}

func toMember(m serf.Member) Member {
	addr, _ := netip.AddrFromSlice(m.Addr)
	return Member{
		Name:   m.Name,
		Addr:   addr.Unmap(),
		Port:   m.Port,
		Tags:   maps.Clone(m.Tags),
		Status: m.Status.String(),
	}
}

// Ready is closed once Run has started serf: Join, Leave, Members and
// SetTags can be used.
func (g *Gossip) Ready() <-chan struct{} { return g.ready }

// Events delivers member events while Run runs; Run closes it when it
// returns. Nothing is dropped: a consumer that falls behind holds serf back.
func (g *Gossip) Events() <-chan Event { return g.events }

func (g *Gossip) running() (*serf.Serf, error) {
	s := g.serf.Load()
	if s == nil {
		return nil, ErrNotRunning
	}
	return s, nil
}

// Join contacts existing members at addrs ("ip:port", "ip" for this node's
// port, or "host[:port]") and returns how many answered. It fails only when
// none could be joined (or ctx ended first; the attempt itself is bounded by
// memberlist's TCP timeout per address).
func (g *Gossip) Join(ctx context.Context, addrs []string) (int, error) {
	s, err := g.running()
	if err != nil {
		return 0, fmt.Errorf("join cluster: %w", err)
	}
	if len(addrs) == 0 {
		return 0, errors.New("join cluster: no address given")
	}
	port := g.cfg.BindPort
	if port == AnyPort {
		port = DefaultPort
	}
	targets := make([]string, len(addrs))
	for i, a := range addrs {
		if targets[i], err = joinAddr(a, port); err != nil {
			return 0, fmt.Errorf("join cluster: %w", err)
		}
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Join(targets, true)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return r.n, fmt.Errorf("join cluster at %s: %w", strings.Join(targets, ", "), r.err)
		}
		g.log.Info("joined cluster", "via", targets, "contacted", r.n)
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("join cluster at %s: %w", strings.Join(targets, ", "), ctx.Err())
	}
}

// joinAddr normalizes one Join address, adding port when it has none.
func joinAddr(a string, port int) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", errors.New("empty address")
	}
	if ap, err := netip.ParseAddrPort(a); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("address %q: port 0", a)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)).String(), nil
	}
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		// a host name without a port
		if strings.ContainsAny(a, ":/[] ") {
			return "", fmt.Errorf("address %q: want ip, ip:port, host or host:port", a)
		}
		return net.JoinHostPort(a, strconv.Itoa(port)), nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || host == "" {
		return "", fmt.Errorf("address %q: want ip, ip:port, host or host:port", a)
	}
	return a, nil
}

// Leave announces a graceful departure and waits for it to spread (under a
// second on a healthy LAN; bounded by serf's broadcast timeouts: about 11s
// at worst, 4.3s with Fast). The other members then report EventLeave and
// status "left". Afterwards this Gossip cannot join again: end Run.
func (g *Gossip) Leave() error {
	s, err := g.running()
	if err != nil {
		return fmt.Errorf("leave cluster: %w", err)
	}
	if err := s.Leave(); err != nil {
		return fmt.Errorf("leave cluster: %w", err)
	}
	g.log.Info("left cluster")
	return nil
}

// Members returns every member known, including failed and left ones not yet
// reaped, sorted by name. It is empty when not running.
func (g *Gossip) Members() []Member {
	s, err := g.running()
	if err != nil {
		return nil
	}
	sm := s.Members()
	ms := make([]Member, len(sm))
	for i, m := range sm {
		ms[i] = toMember(m)
	}
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return ms
}

// Local returns this node as the cluster sees it. When not running (before
// Ready, after Run) it has only the name and the configured tags.
func (g *Gossip) Local() Member {
	s, err := g.running()
	if err != nil {
		return Member{Name: g.cfg.NodeName, Tags: maps.Clone(g.cfg.Tags)}
	}
	return toMember(s.LocalMember())
}

// SetTags replaces this node's tags and spreads them (EventUpdate on every
// member). Encoded, the tags must fit in 512 bytes.
func (g *Gossip) SetTags(tags map[string]string) error {
	s, err := g.running()
	if err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	tags = maps.Clone(tags)
	if tags == nil {
		tags = map[string]string{}
	}
	if err := s.SetTags(tags); err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	return nil
}

// SetKey makes key this member's only gossip key, at once: what it sends
// is encrypted with it, and what was encrypted with any other key is
// dropped. It changes this member alone (no key query goes out): the
// cluster's members each set the key they read from the replicated state,
// so that a member that was removed, and holds only the old key, neither
// hears nor is heard from again. Keys installed by others through serf's
// key queries go too. It may be called before Run and while it runs.
func (g *Gossip) SetKey(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("set gossip key: key is %d bytes, want %d", len(key), KeySize)
	}
	if err := g.keyring.AddKey(key); err != nil {
		return fmt.Errorf("set gossip key: %w", err)
	}
	if err := g.keyring.UseKey(key); err != nil {
		return fmt.Errorf("set gossip key: %w", err)
	}
	for _, k := range g.keyring.GetKeys() {
		if !bytes.Equal(k, key) {
			if err := g.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("set gossip key: %w", err)
			}
		}
	}
	return nil
}

// Keys returns this member's gossip keys, the one it encrypts with first.
func (g *Gossip) Keys() [][]byte { return g.keyring.GetKeys() }
