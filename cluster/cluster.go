// Package cluster joins several samgw nodes into one gateway over NATS: a
// connection on any node can be reached from every node, broadcasts reach
// all of them, identities are found wherever they are connected, and the
// script store is one JetStream key-value bucket.
//
// NATS is the distributed engine; this package only maps the gateway onto
// it:
//
//   - samgw.send.<node>: requests to deliver a push to a connection of that
//     node (connection ids carry their node: "<node>.c7");
//   - samgw.broadcast: a broadcast, answered by each node with its count;
//   - bucket samgw_presence (entries expire after the presence TTL unless
//     the owning node refreshes them): node.<node>, and conn.<identity>.<id>
//     for each connection (identity base64url, "-" before authentication),
//     so a connection and its identity appear and go in one update, and a
//     crashed node's entries go away by themselves;
//   - bucket samgw_store: the script store;
//   - bucket samgw_replay: the ids of signed messages within the replay
//     window (see Claim).
package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripting"
)

// ErrUnavailable is returned when an operation needs NATS and NATS is not
// reachable. It wraps scripting.ErrClusterUnavailable, so handlers fail with
// cluster_unavailable.
var ErrUnavailable = fmt.Errorf("cluster: %w", scripting.ErrClusterUnavailable)

// A Cluster is what the scripting engine reaches other nodes through.
var (
	_ scripting.Cluster = (*Cluster)(nil)
	_ scripting.KV      = (*Store)(nil)
)

// ErrNoJetStream is returned by Connect when the NATS server (or the
// account) has no JetStream, which the cluster's buckets need.
var ErrNoJetStream = errors.New("cluster: JetStream is not enabled")

// ErrNATSVersion is returned by Connect when the NATS server is older than
// MinNATSVersion.
var ErrNATSVersion = errors.New("cluster: NATS server too old")

// MinNATSVersion is the oldest nats-server the cluster works with: its
// buckets are JetStream key-value buckets with a TTL, listed through
// single-filter consumers and claimed with create-if-absent, all there in
// 2.9 (tried by hand with Debian's 2.9.10; the tests run 2.15).
const MinNATSVersion = "2.9.0"

// checkNATSVersion refuses a server older than MinNATSVersion. A version
// it cannot read (a custom build) is let through: the bucket calls that
// follow fail with the server's own words if something is missing.
func checkNATSVersion(version string) error {
	have, ok := parseVersion(version)
	if !ok {
		return nil
	}
	want, _ := parseVersion(MinNATSVersion)
	for i := range have {
		if have[i] != want[i] {
			if have[i] < want[i] {
				return fmt.Errorf("%w: nats-server %s; samgw needs %s or later (JetStream key-value buckets with a TTL): upgrade the NATS servers", ErrNATSVersion, version, MinNATSVersion)
			}
			return nil
		}
	}
	return nil
}

// parseVersion reads "major.minor.patch" (with any "-suffix" ignored).
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

// ErrSubjectNotAllowed is returned by Publish and Request for a subject
// outside the allowed prefixes.
var ErrSubjectNotAllowed = errors.New("cluster: subject not allowed")

// DefaultPresenceTTL is how long presence entries live without a refresh;
// they are refreshed every third of it.
const DefaultPresenceTTL = 15 * time.Second

// The bounds of a presence TTL: refreshed every third of it, a shorter one
// costs a write per connection that often; a longer one leaves a dead
// node's connections listed that long.
const (
	MinPresenceTTL = 3 * time.Second
	MaxPresenceTTL = 10 * time.Minute
)

const (
	subjectSend      = "samgw.send."
	subjectBroadcast = "samgw.broadcast"
	subjectTopic     = "samgw.topic."      // + the topic: scripts' gateway.publish
	subjectList      = "samgw.connections" // every node answers with its open connections
	presenceBucket   = "samgw_presence"
	storeBucket      = "samgw_store"
	// gatherWindow bounds how long a broadcast waits for other nodes' counts.
	gatherWindow = 250 * time.Millisecond
)

// Config configures a node's membership.
type Config struct {
	// URLs are the NATS servers, comma-separated.
	URLs string
	// Node names this node; it prefixes the ids of its connections.
	Node string
	// Token, CredsFile and CAFile authenticate to NATS and verify its TLS.
	Token, CredsFile, CAFile string
	// PresenceTTL: zero means DefaultPresenceTTL.
	PresenceTTL time.Duration
	// ReplayWindow is how long signed message ids are kept cluster-wide:
	// twice the gateway's MaxSkew. Zero means twice gateway.DefaultMaxSkew.
	ReplayWindow time.Duration
	// SubjectAllow are the subject prefixes scripts may publish and
	// request on (nats.publish, nats.request); none by default.
	SubjectAllow []string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Cluster is this node's membership. Create it with Connect, start it with
// Start once the gateway server exists, stop it with Close.
type Cluster struct {
	cfg       Config
	log       *slog.Logger
	nc        *nats.Conn
	presence  jetstream.KeyValue
	store     jetstream.KeyValue
	replay    jetstream.KeyValue
	srv       *gateway.Server
	subs      []*nats.Subscription
	roster    *roster                             // this node's copy of presence, for sends without a round trip
	nodeDown  func(node string, connIDs []string) // see OnNodeDown; set before Start
	checks    atomic.Uint64                       // presence checks made (checkDown), for tests
	published atomic.Uint64                       // cross-node sends made as a plain publish
	asked     atomic.Uint64                       // cross-node sends made as a request (target not in the roster)
	// how this node delivers other nodes' topic pushes (see DeliverTopics)
	deliverTopic atomic.Pointer[func(scripting.TopicPush) int]
	stopWatch    context.CancelFunc // ends the roster's watch
	watchDone    chan struct{}      // closed when it has ended

	stop    chan struct{}
	done    chan struct{}
	changed chan struct{} // a connection came or went: refresh soon

	mu      sync.Mutex
	written map[string]bool // presence keys this node wrote last time
}

// Connect joins NATS and opens (creating if needed) the presence and store
// buckets. NATS connection losses later are repaired in the background.
func Connect(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Node == "" || strings.ContainsAny(cfg.Node, ".*> \t") {
		return nil, fmt.Errorf("cluster: node name %q: want a name without dots, spaces or wildcards", cfg.Node)
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = DefaultPresenceTTL
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 2 * gateway.DefaultMaxSkew
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("node", cfg.Node)
	opts := []nats.Option{
		nats.Name("samgw " + cfg.Node),
		nats.MaxReconnects(-1),
		// Exponential backoff from 250 ms to 5 s, with equal jitter so the
		// nodes do not all return at once.
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := min(250*time.Millisecond<<min(attempts, 5), 5*time.Second)
			return d/2 + rand.N(d/2)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "error", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrl()) }),
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	nc, err := nats.Connect(cfg.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS %s: %w", cfg.URLs, err)
	}
	if err := checkNATSVersion(nc.ConnectedServerVersion()); err != nil {
		url := nc.ConnectedUrlRedacted()
		nc.Close()
		return nil, fmt.Errorf("%w (at %s)", err, url)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("%w: NATS %s at %s has no JetStream (presence, the store and the replay check are JetStream key-value buckets): start nats-server with -js, or enable JetStream for this account",
				ErrNoJetStream, nc.ConnectedServerVersion(), nc.ConnectedUrlRedacted())
		}
		return nil, fmt.Errorf("cluster: JetStream at %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	log.Info("NATS connected", "server_version", nc.ConnectedServerVersion(), "url", nc.ConnectedUrlRedacted())
	presence, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: presenceBucket, TTL: cfg.PresenceTTL})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: presence bucket: %w", err)
	}
	store, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: storeBucket})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: store bucket: %w", err)
	}
	replay, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: replayBucket, TTL: cfg.ReplayWindow})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: replay bucket: %w", err)
	}
	return &Cluster{cfg: cfg, log: log, nc: nc, presence: presence, store: store, replay: replay, roster: newRoster(cfg.PresenceTTL),
		stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}, 1), written: make(map[string]bool)}, nil
}

// Node returns this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

// IDPrefix is the gateway.Config.IDPrefix of this node's server.
func (c *Cluster) IDPrefix() string { return c.cfg.Node + "." }

// Start serves other nodes' sends and broadcasts for srv's connections and
// keeps this node's presence fresh.
func (c *Cluster) Start(srv *gateway.Server) error {
	c.srv = srv
	sub, err := c.nc.Subscribe(subjectSend+c.cfg.Node, c.serveSend)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.subs = append(c.subs, sub)
	sub, err = c.nc.Subscribe(subjectBroadcast, c.serveBroadcast)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.subs = append(c.subs, sub)
	sub, err = c.nc.Subscribe(subjectTopic+">", c.serveTopic)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.subs = append(c.subs, sub)
	sub, err = c.nc.Subscribe(subjectList, c.serveList)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.subs = append(c.subs, sub)
	c.refresh()
	go c.refreshLoop()
	ctx, cancel := context.WithCancel(context.Background())
	c.stopWatch, c.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(c.watchDone)
		c.roster.watch(ctx, c.presence, c.log)
	}()
	return nil
}

// Close stops the presence refresh, withdraws this node's presence (best
// effort) and leaves NATS.
func (c *Cluster) Close() error {
	c.stopRefresh()
	for _, s := range c.subs {
		s.Unsubscribe() //nolint:errcheck // leaving anyway
	}
	if c.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.mu.Lock()
		for key := range c.written {
			c.presence.Delete(ctx, key) //nolint:errcheck // the TTL removes what this misses
		}
		c.mu.Unlock()
		cancel()
	}
	c.nc.Close()
	return nil
}

// stopRefresh stops the presence refresh without withdrawing anything, as a
// crash would.
func (c *Cluster) stopRefresh() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	if c.srv != nil {
		<-c.done
	}
	if c.stopWatch != nil {
		c.stopWatch()
		<-c.watchDone
	}
}

// Healthy reports whether NATS is reachable now.
func (c *Cluster) Healthy() error {
	if !c.nc.IsConnected() {
		return ErrUnavailable
	}
	return nil
}

// envelope is what nodes send each other.
type envelope struct {
	Conn    string          `json:"conn,omitempty"`
	Route   string          `json:"route,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Except  string          `json:"except,omitempty"`
	Origin  string          `json:"origin,omitempty"`
	// Offset, Prev and Epoch number a publication of a topic that keeps
	// history (scripting.TopicPush).
	Offset uint64 `json:"offset,omitempty"`
	Prev   uint64 `json:"prev,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

// nodeOf is the node part of a connection id.
func nodeOf(connID string) string {
	node, _, _ := strings.Cut(connID, ".")
	return node
}

func (c *Cluster) deliverLocal(connID string, payload []byte, route string) bool {
	conn := c.srv.Conn(connID)
	if conn == nil {
		return false
	}
	_, err := conn.Send(payload, route)
	return err == nil
}

// Send pushes payload to a connection on any node. It reports false when
// the connection does not exist; ErrUnavailable when NATS is down.
//
// Across nodes, a connection this node's roster knows (from presence) gets
// the push as a plain publish to its node, with no round trip: true then
// means the connection existed as of the last presence update seen here and
// the push was handed to NATS; like every push it is delivered at most once
// (lost if the connection closes meanwhile, or NATS drops it). A connection
// the roster does not know yet (younger than its node's last presence
// update) is asked for directly: true then means it was queued on it.
func (c *Cluster) Send(ctx context.Context, connID string, payload []byte, route string) (bool, error) {
	node := nodeOf(connID)
	if node == c.cfg.Node {
		return c.deliverLocal(connID, payload, route), nil
	}
	if !c.nc.IsConnected() {
		return false, ErrUnavailable
	}
	data := appendEnvelope(nil, connID, route, payload)
	if c.roster.has(connID) {
		if err := c.nc.Publish(subjectSend+node, data); err != nil {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		c.published.Add(1)
		return true, nil
	}
	c.asked.Add(1)
	reply, err := c.nc.RequestWithContext(ctx, subjectSend+node, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil // no such node: no such connection
	case err != nil:
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return string(reply.Data) == "true", nil
}

// appendEnvelope encodes a send envelope without encoding/json: the
// payload is JSON already and goes in as it is.
func appendEnvelope(dst []byte, connID, route string, payload []byte) []byte {
	dst = append(dst, `{"conn":`...)
	dst = protocol.AppendString(dst, connID)
	if route != "" {
		dst = append(dst, `,"route":`...)
		dst = protocol.AppendString(dst, route)
	}
	if len(payload) > 0 {
		dst = append(dst, `,"payload":`...)
		dst = append(dst, payload...)
	}
	return append(dst, '}')
}

func (c *Cluster) serveSend(m *nats.Msg) {
	var e envelope
	ok := json.Unmarshal(m.Data, &e) == nil && c.deliverLocal(e.Conn, e.Payload, e.Route)
	if m.Reply != "" { // the sender asked whether it was delivered
		m.Respond([]byte(strconv.FormatBool(ok))) //nolint:errcheck // the sender times out
	}
}

// Broadcast pushes payload to every connection of every node but except,
// and returns how many it reached: this node's, plus what the other live
// nodes report within a short window. The other nodes are told first (the
// live ones from the roster, without a round trip), so they deliver while
// this one does. NATS being down is ErrUnavailable after the local
// delivery.
func (c *Cluster) Broadcast(ctx context.Context, payload []byte, route, except string) (int, error) {
	data, _ := json.Marshal(envelope{Route: route, Payload: payload, Except: except, Origin: c.cfg.Node})
	return c.tellOthers(subjectBroadcast, data, func() int { return c.broadcastLocal(payload, route, except) })
}

// PublishTopic pushes payload to the subscribers of topic on the other
// nodes, over the subject samgw.topic.<topic>, and returns how many they
// reported reaching within a short window. Every node listens on the
// topic subjects, so each live node answers (0 when it has no subscriber)
// and the wait ends as soon as all have.
func (c *Cluster) PublishTopic(ctx context.Context, p scripting.TopicPush) (int, error) {
	data, _ := json.Marshal(envelope{Route: p.Route, Payload: p.Payload, Origin: c.cfg.Node, Offset: p.Offset, Prev: p.Prev, Epoch: p.Epoch})
	return c.tellOthers(subjectTopic+p.Topic, data, func() int { return 0 })
}

// DeliverTopics sets how this node delivers the topic pushes of other
// nodes to its subscribers (the script engine's).
func (c *Cluster) DeliverTopics(deliver func(scripting.TopicPush) int) {
	c.deliverTopic.Store(&deliver)
}

// tellOthers publishes data on subject to the other live nodes, runs local
// meanwhile, and adds up the counts the nodes answer within gatherWindow.
func (c *Cluster) tellOthers(subject string, data []byte, local func() int) (int, error) {
	if !c.nc.IsConnected() {
		return local(), ErrUnavailable
	}
	others := c.roster.liveNodes()
	delete(others, c.cfg.Node)
	if len(others) == 0 {
		return local(), nil
	}
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return local(), fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // done with it
	if err := c.nc.PublishRequest(subject, inbox, data); err != nil {
		return local(), fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	count := local()
	deadline := time.Now().Add(gatherWindow)
	for answered := 0; answered < len(others); answered++ {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break // a node that did not answer in time is not counted
		}
		n, _ := strconv.Atoi(string(m.Data))
		count += n
	}
	return count, nil
}

func (c *Cluster) broadcastLocal(payload []byte, route, except string) int {
	count := 0
	c.srv.Range(func(conn *gateway.Conn) bool {
		if conn.ID() != except {
			if _, err := conn.Send(payload, route); err == nil {
				count++
			}
		}
		return true
	})
	return count
}

func (c *Cluster) serveBroadcast(m *nats.Msg) {
	var e envelope
	if json.Unmarshal(m.Data, &e) != nil || e.Origin == c.cfg.Node {
		return
	}
	n := c.broadcastLocal(e.Payload, e.Route, e.Except)
	m.Respond([]byte(strconv.Itoa(n))) //nolint:errcheck // the broadcaster stops waiting
}

// serveTopic delivers another node's topic push to this node's subscribers
// and answers how many it reached.
func (c *Cluster) serveTopic(m *nats.Msg) {
	var e envelope
	if json.Unmarshal(m.Data, &e) != nil || e.Origin == c.cfg.Node {
		return
	}
	n := 0
	if deliver := c.deliverTopic.Load(); deliver != nil {
		n = (*deliver)(scripting.TopicPush{Topic: strings.TrimPrefix(m.Subject, subjectTopic), Payload: e.Payload, Route: e.Route,
			Offset: e.Offset, Prev: e.Prev, Epoch: e.Epoch})
	}
	m.Respond([]byte(strconv.Itoa(n))) //nolint:errcheck // the publisher stops waiting
}

// nodeList is a node's answer to a listing: its open connections.
type nodeList struct {
	Node string   `json:"node"`
	IDs  []string `json:"ids"`
}

// serveList answers another node's listing with this node's open
// connections, as they are now.
func (c *Cluster) serveList(m *nats.Msg) {
	if string(m.Data) == c.cfg.Node {
		return // our own request
	}
	data, _ := json.Marshal(nodeList{Node: c.cfg.Node, IDs: c.localIDs()})
	m.Respond(data) //nolint:errcheck // the lister stops waiting
}

func (c *Cluster) localIDs() []string {
	infos := c.srv.Connections()
	ids := make([]string, len(infos))
	for i, in := range infos {
		ids[i] = in.ID
	}
	return ids
}

// Connections lists the open connections of every live node. Each node is
// asked for its own, as they are now, so a connection whose client has
// its auth reply is listed, however new; presence stands in only for a
// node that did not answer within the gather window (or that this node
// does not know yet), and may be up to a refresh behind.
func (c *Cluster) Connections(ctx context.Context) ([]string, error) {
	if !c.nc.IsConnected() {
		return nil, ErrUnavailable
	}
	answered := map[string][]string{c.cfg.Node: c.localIDs()}
	others := c.roster.liveNodes()
	delete(others, c.cfg.Node)
	if len(others) > 0 {
		inbox := c.nc.NewRespInbox()
		sub, err := c.nc.SubscribeSync(inbox)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		defer sub.Unsubscribe() //nolint:errcheck // done with it
		if err := c.nc.PublishRequest(subjectList, inbox, []byte(c.cfg.Node)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		deadline := time.Now().Add(gatherWindow)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		for len(answered) <= len(others) {
			m, err := sub.NextMsg(time.Until(deadline))
			if err != nil {
				break // the rest come from presence
			}
			var l nodeList
			if json.Unmarshal(m.Data, &l) == nil && l.Node != "" {
				answered[l.Node] = l.IDs
			}
		}
	}
	var ids []string
	for _, list := range answered {
		ids = append(ids, list...)
	}
	all := true
	for node := range others {
		if _, ok := answered[node]; !ok {
			all = false
		}
	}
	if all {
		return ids, nil // presence would add nothing newer
	}
	keys, err := c.presenceKeys(ctx, "conn.>")
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		// A connection that just authenticated may briefly have its old
		// entry too, until the refresh that wrote the new one removes it.
		id := connOfKey(k)
		node, _, _ := strings.Cut(id, ".")
		if _, ok := answered[node]; ok || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}

// noIdentity stands for the identity of a connection that has none yet;
// encodeKey never yields it.
const noIdentity = "-"

// presenceKey is the presence entry of a connection and its identity.
func presenceKey(connID, identity string) string {
	ident := noIdentity
	if identity != "" {
		ident = encodeKey(identity)
	}
	return "conn." + ident + "." + connID
}

// connOfKey is the connection id of a presence key from presenceKey.
func connOfKey(key string) string {
	rest := strings.TrimPrefix(key, "conn.")
	_, id, _ := strings.Cut(rest, ".")
	return id
}

// SendTo pushes payload to every connection of identity, on any node, and
// returns how many it reached.
func (c *Cluster) SendTo(ctx context.Context, identity string, payload []byte, route string) (int, error) {
	if identity == "" {
		return 0, nil // an empty identity is never a target
	}
	keys, err := c.presenceKeys(ctx, "conn."+encodeKey(identity)+".>")
	if err != nil {
		return 0, err
	}
	count := 0
	for _, k := range keys {
		ok, err := c.Send(ctx, connOfKey(k), payload, route)
		if err != nil {
			return count, err
		}
		if ok {
			count++
		}
	}
	return count, nil
}

func (c *Cluster) presenceKeys(ctx context.Context, filter string) ([]string, error) {
	if !c.nc.IsConnected() {
		return nil, ErrUnavailable
	}
	lister, err := c.presence.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// refreshLoop re-publishes this node's presence every third of the TTL, and
// soon after a connection comes or goes.
func (c *Cluster) refreshLoop() {
	defer close(c.done)
	tick := time.NewTicker(c.cfg.PresenceTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			c.refresh()
			c.checkDown()
		case <-c.changed:
			// Let a burst of connections settle, then publish them at once.
			settle := time.NewTimer(announceDelay)
			select {
			case <-c.stop:
				settle.Stop()
				return
			case <-settle.C:
			}
			c.refresh()
		}
	}
}

// announceDelay coalesces the presence updates of connections that come or
// go together.
const announceDelay = 20 * time.Millisecond

// Announce tells the cluster that a connection came, authenticated or went,
// so presence is refreshed within announceDelay instead of at the next
// periodic refresh. It does not block.
func (c *Cluster) Announce() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// refresh writes the presence of this node and its connections, and
// removes the entries of connections that are gone.
func (c *Cluster) refresh() {
	if !c.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PresenceTTL/3)
	defer cancel()
	now := make(map[string]bool)
	put := func(key, value string) {
		now[key] = true
		if _, err := c.presence.Put(ctx, key, []byte(value)); err != nil {
			c.log.Debug("Presence not refreshed", "key", key, "error", err)
		}
	}
	put("node."+c.cfg.Node, time.Now().UTC().Format(time.RFC3339))
	c.srv.Range(func(conn *gateway.Conn) bool {
		put(presenceKey(conn.ID(), conn.Identity()), conn.Identity())
		return true
	})
	c.mu.Lock()
	for key := range c.written {
		if !now[key] {
			c.presence.Delete(ctx, key) //nolint:errcheck // the TTL removes what this misses
		}
	}
	c.written = now
	c.mu.Unlock()
}

// encodeKey makes any string a valid key token (base64url, no padding).
func encodeKey(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// Publish sends payload on subject, which must start with an allowed
// prefix.
func (c *Cluster) Publish(subject string, payload []byte) error {
	if !c.subjectAllowed(subject) {
		return fmt.Errorf("%w: %q", ErrSubjectNotAllowed, subject)
	}
	if !c.nc.IsConnected() {
		return ErrUnavailable
	}
	if err := c.nc.Publish(subject, payload); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Request sends payload on subject and returns the reply.
func (c *Cluster) Request(ctx context.Context, subject string, payload []byte) ([]byte, error) {
	if !c.subjectAllowed(subject) {
		return nil, fmt.Errorf("%w: %q", ErrSubjectNotAllowed, subject)
	}
	if !c.nc.IsConnected() {
		return nil, ErrUnavailable
	}
	m, err := c.nc.RequestWithContext(ctx, subject, payload)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func (c *Cluster) subjectAllowed(subject string) bool {
	if strings.HasPrefix(subject, "samgw.") || strings.ContainsAny(subject, "*> ") {
		return false // the gateway's own subjects and wildcards are never the script's
	}
	for _, p := range c.cfg.SubjectAllow {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}

// Conn returns the cluster's NATS connection, which the mailboxes share
// (their JetStream is the cluster's).
func (c *Cluster) Conn() *nats.Conn { return c.nc }

// OnNodeDown sets what runs when another node goes down: its presence was
// not refreshed within the presence TTL (it died, or lost NATS) or it was
// withdrawn (it stopped). It runs on one node of the cluster (the live one
// with the smallest name), on the presence refresh's goroutine, once per
// node going down, with the connections presence still listed for it
// (sorted). Call it before Start.
func (c *Cluster) OnNodeDown(f func(node string, connIDs []string)) { c.nodeDown = f }

// checkDown reports the nodes that went down since the last check.
func (c *Cluster) checkDown() {
	defer c.checks.Add(1)
	down, acts := c.roster.takeDown(c.cfg.Node, time.Now())
	for node, ids := range down {
		c.log.Warn("Node down", "node", node, "connections", len(ids), "acting", acts)
		if acts && c.nodeDown != nil {
			c.nodeDown(node, ids)
		}
	}
}

// Nodes lists the live nodes (this one included), sorted: those whose
// presence was written within the presence TTL.
func (c *Cluster) Nodes() []string {
	live := c.roster.liveNodes()
	live[c.cfg.Node] = true
	nodes := make([]string, 0, len(live))
	for n := range live {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	return nodes
}
