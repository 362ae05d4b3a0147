package content

import (
	"fmt"
	"net/http"

	"github.com/ipfs/boxo/gateway"
)

// GatewayHandler serves the trustless gateway (GET /ipfs/{cid} with
// ?format=raw or ?format=car, or the matching Accept headers) from this
// node's blocks only: it never fetches on a caller's behalf, so it cannot be
// used to make the node download arbitrary content.
func (s *Store) GatewayHandler() (http.Handler, error) {
	backend, err := gateway.NewBlocksBackend(s.offline)
	if err != nil {
		return nil, fmt.Errorf("gateway backend: %w", err)
	}
	h := gateway.NewHandler(gateway.Config{
		DeserializedResponses: false, // trustless: blocks and CARs, verifiable by the client
		NoDNSLink:             true,
	}, backend)
	mux := http.NewServeMux()
	mux.Handle("/ipfs/", h)
	return mux, nil
}
