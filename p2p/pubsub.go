package p2p

import (
	"context"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Score thresholds: a peer below GossipThreshold gets no gossip from us,
// below PublishThreshold none of our messages, below GraylistThreshold we
// ignore it altogether.
var scoreThresholds = &pubsub.PeerScoreThresholds{
	GossipThreshold:             -100,
	PublishThreshold:            -500,
	GraylistThreshold:           -1000,
	AcceptPXThreshold:           10,
	OpportunisticGraftThreshold: 2,
}

func newGossipSub(ctx context.Context, h host.Host, cfg *Config) (*pubsub.PubSub, error) {
	// GossipSub's own protocol is namespaced too, so that two networks on
	// one connection never form a mesh.
	proto := protocol.ID(Prefix(cfg.Network) + "/meshsub/1.2.0")
	features := func(f pubsub.GossipSubFeature, p protocol.ID) bool {
		return p == proto && f != pubsub.GossipSubFeatureExtensions
	}
	params := pubsub.DefaultGossipSubParams()
	if cfg.GossipHeartbeat > 0 {
		params.HeartbeatInterval = cfg.GossipHeartbeat
	}
	score := &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -50,
		IPColocationFactorThreshold: 10,
		IPColocationFactorWhitelist: cfg.ColocatedNets, // loopback is always exempt
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       0.9,
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithGossipSubProtocols([]protocol.ID{proto}, features),
		pubsub.WithGossipSubParams(params),
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithMaxMessageSize(cfg.MaxMessageSize),
		pubsub.WithPeerScore(score, scoreThresholds),
	)
	if err != nil {
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	return ps, nil
}

// TopicValidator checks one message from the network before it is delivered
// or forwarded. Reject lowers the sender's score; Ignore drops silently.
type TopicValidator = func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult

// Join joins the network's topic name (e.g. "offers/1" becomes
// /aixblock/<network>/offers/1) with a validator. A nil validator accepts
// every signed message under the size limit. Peers whose messages are
// rejected lose score on that topic, fast enough that a few bad messages
// push them below the gossip threshold.
func (n *Node) Join(name string, v TopicValidator) (*pubsub.Topic, error) {
	topic := n.TopicName(name)
	if v != nil {
		if err := n.PubSub.RegisterTopicValidator(topic, v, pubsub.WithValidatorTimeout(5*time.Second)); err != nil {
			return nil, fmt.Errorf("topic %s validator: %w", topic, err)
		}
	}
	t, err := n.PubSub.Join(topic)
	if err != nil {
		return nil, fmt.Errorf("join topic %s: %w", topic, err)
	}
	err = t.SetScoreParams(&pubsub.TopicScoreParams{
		SkipAtomicValidation:           true,
		TopicWeight:                    1,
		TimeInMeshQuantum:              time.Second, // a divisor even when unweighted
		InvalidMessageDeliveriesWeight: -100,
		InvalidMessageDeliveriesDecay:  0.5,
	})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("topic %s score params: %w", topic, err)
	}
	return t, nil
}
