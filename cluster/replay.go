package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/gateway"
)

// replayBucket holds one key per signed message id accepted by any node,
// for the replay window (the bucket's TTL), so that a signed frame is
// accepted once by the cluster, not once per node.
const replayBucket = "samgw_replay"

var _ gateway.ReplayGuard = (*Cluster)(nil)

// Claim records a signed message id of identity in the replay bucket with
// create-if-absent: the first node to claim it wins, every other claim
// within the bucket's TTL is a replay. The ttl argument is the window the
// gateway asks for; the bucket was created with Config.ReplayWindow.
func (c *Cluster) Claim(ctx context.Context, identity, id string, _ time.Duration) (bool, error) {
	if c.replay == nil {
		return false, fmt.Errorf("%w: no replay bucket", ErrUnavailable)
	}
	if !c.nc.IsConnected() {
		return false, ErrUnavailable
	}
	_, err := c.replay.Create(ctx, replayKey(identity, id), nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// replayKey is a valid KV key for (identity, id): both hashed together, so
// any characters and lengths fit.
func replayKey(identity, id string) string {
	sum := sha256.Sum256([]byte(identity + "\x00" + id))
	return "r." + base64.RawURLEncoding.EncodeToString(sum[:])
}
