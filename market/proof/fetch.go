package proof

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Fetched is a record a provider served, checked, with the bytes it
// came in (what Store.Add takes).
type Fetched struct {
	Record
	Raw []byte
}

// FetchRecords asks provider for the records it keeps about itself and
// returns those that verify, are of network and are about provider. The
// error says why the request failed, or why each other record was
// refused (forged, tampered, about another provider, of another
// network); the records that passed come with it.
func FetchRecords(ctx context.Context, h host.Host, network string, provider peer.ID, now time.Time) ([]Fetched, error) {
	req, err := encode(recordsRequest{V: Version})
	if err != nil {
		return nil, err
	}
	out, err := p2p.Request(ctx, h, provider, p2p.ProtocolID(network, wireRecords.name), req, wireRecords.limits)
	if err != nil {
		return nil, fmt.Errorf("proof: records of %s: %w", provider, err)
	}
	rep, err := decodeRecordsReply(out)
	if err != nil {
		return nil, fmt.Errorf("proof: records of %s: %w", provider, err)
	}
	var got []Fetched
	var refused []error
	for i, raw := range rep.Records {
		rec, err := DecodeRecord(raw)
		if err == nil {
			err = rec.Check(network, provider, now)
		}
		if err != nil {
			refused = append(refused, fmt.Errorf("record %d: %w", i, err))
			continue
		}
		got = append(got, Fetched{Record: rec, Raw: raw})
	}
	if len(refused) > 0 {
		return got, fmt.Errorf("proof: records of %s: %d of %d refused: %w", provider, len(refused), len(rep.Records), errors.Join(refused...))
	}
	return got, nil
}
