package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/market"
)

// ErrNoDaemon means no daemon answers: none was started on the repo, or
// the one that wrote its address is gone.
var ErrNoDaemon = errors.New("no daemon running")

// Client talks to a running daemon's API. node.NewClient finds the
// daemon of a repo and makes one.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient is a client of the API at base (http://HOST:PORT) that
// authenticates with token. Calls that answer at once time out after 30 s;
// streams and transfers last as long as their context.
func NewClient(base, token string) *Client {
	return &Client{base: base, token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

// URL is the API's base URL.
func (c *Client) URL() string { return c.base }

// ID asks for the node's identity and addresses.
func (c *Client) ID(ctx context.Context) (IDInfo, error) {
	var out IDInfo
	return out, c.do(ctx, http.MethodGet, "/v1/id", nil, &out)
}

// Peers lists connected peers.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var out []PeerInfo
	return out, c.do(ctx, http.MethodGet, "/v1/peers", nil, &out)
}

// Connect dials a peer by multiaddr (with /p2p/<peer-id>).
func (c *Client) Connect(ctx context.Context, addr string) (PeerInfo, error) {
	var out PeerInfo
	return out, c.do(ctx, http.MethodPost, "/v1/peers/connect", ConnectRequest{Addr: addr}, &out)
}

// Shutdown is POST /v1/shutdown: the daemon stops as on SIGTERM.
func (c *Client) Shutdown(ctx context.Context) error {
	var out struct{}
	return c.do(ctx, http.MethodPost, "/v1/shutdown", nil, &out)
}

// Status reports peers, DHT peers and uptime.
func (c *Client) Status(ctx context.Context) (StatusInfo, error) {
	var out StatusInfo
	return out, c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
}

// GPUs returns the inventory with each GPU's health.
func (c *Client) GPUs(ctx context.Context) (gpu.Inventory, error) {
	var out gpu.Inventory
	return out, c.do(ctx, http.MethodGet, "/v1/gpus", nil, &out)
}

// InjectFault injects a fault into a mock GPU.
func (c *Client) InjectFault(ctx context.Context, index int, f gpu.Fault) error {
	var out InjectRequest
	return c.do(ctx, http.MethodPost, "/v1/gpus/inject", InjectRequest{Index: index, Fault: f}, &out)
}

// ResetHealth clears a GPU's health state.
func (c *Client) ResetHealth(ctx context.Context, uuid string) (gpu.GPU, error) {
	var out gpu.GPU
	return out, c.do(ctx, http.MethodPost, "/v1/gpus/reset-health", ResetHealthRequest{UUID: uuid}, &out)
}

// WatchGPUs calls fn for every health change until ctx ends or fn errs.
func (c *Client) WatchGPUs(ctx context.Context, fn func(gpu.Change) error) error {
	// No client timeout: the stream lasts as long as the user watches.
	resp, err := c.send(ctx, &http.Client{}, http.MethodGet, "/v1/gpus/events", nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ch gpu.Change
		if err := dec.Decode(&ch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("api /v1/gpus/events: %w", err)
		}
		if err := fn(ch); err != nil {
			return err
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.call(ctx, c.http, method, path, in, out)
}

// call sends in as JSON (when not nil) with hc and decodes the answer into out.
func (c *Client) call(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, hc, method, path, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("api %s %s: read response: %w", method, path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("api %s: decode response: %w", path, err)
	}
	return nil
}

// send makes one authenticated request and returns the response once its
// status is 200; otherwise the daemon's error message.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("api request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s (the api file is stale: did the daemon crash?)", ErrNoDaemon, c.base)
		}
		return nil, fmt.Errorf("api %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		// The daemon's message is for the user as it is: the route it
		// came from is noise to them.
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("api %s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// Wallet is GET /v1/wallet.
func (c *Client) Wallet(ctx context.Context) (WalletInfo, error) {
	var out WalletInfo
	return out, c.do(ctx, http.MethodGet, "/v1/wallet", nil, &out)
}

// Channels is GET /v1/wallet/channels.
func (c *Client) Channels(ctx context.Context) (ChannelsInfo, error) {
	var out ChannelsInfo
	return out, c.do(ctx, http.MethodGet, "/v1/wallet/channels", nil, &out)
}

// Deposit is POST /v1/wallet/deposit.
func (c *Client) Deposit(ctx context.Context, req PaymentRequest) (TxInfo, error) {
	var out TxInfo
	return out, c.do(ctx, http.MethodPost, "/v1/wallet/deposit", req, &out)
}

// Voucher is POST /v1/wallet/voucher; it returns the signed voucher's JSON.
func (c *Client) Voucher(ctx context.Context, req PaymentRequest) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodPost, "/v1/wallet/voucher", req, &out)
}

// Redeem is POST /v1/wallet/redeem.
func (c *Client) Redeem(ctx context.Context, req RedeemRequest) (RedeemResult, error) {
	var out RedeemResult
	return out, c.do(ctx, http.MethodPost, "/v1/wallet/redeem", req, &out)
}

// CloseChannel is POST /v1/wallet/close.
func (c *Client) CloseChannel(ctx context.Context, req ChannelRequest) (TxInfo, error) {
	var out TxInfo
	return out, c.do(ctx, http.MethodPost, "/v1/wallet/close", req, &out)
}

// Withdraw is POST /v1/wallet/withdraw.
func (c *Client) Withdraw(ctx context.Context, req ChannelRequest) (TxInfo, error) {
	var out TxInfo
	return out, c.do(ctx, http.MethodPost, "/v1/wallet/withdraw", req, &out)
}

// Providers is GET /v1/market/providers.
func (c *Client) Providers(ctx context.Context, class string) (ProvidersInfo, error) {
	var out ProvidersInfo
	return out, c.do(ctx, http.MethodGet, "/v1/market/providers?gpu="+url.QueryEscape(class), nil, &out)
}

// Offer is POST /v1/market/offer.
func (c *Client) Offer(ctx context.Context, req OfferRequest) (OfferResult, error) {
	var out OfferResult
	return out, c.do(ctx, http.MethodPost, "/v1/market/offer", req, &out)
}

// Verify is POST /v1/market/verify. A challenge of a real class runs for
// up to a minute or two, longer than the client's usual timeout.
func (c *Client) Verify(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	var out VerifyResult
	return out, c.call(ctx, &http.Client{Timeout: 10 * time.Minute}, http.MethodPost, "/v1/market/verify", req, &out)
}

// Deals is GET /v1/market/deals.
func (c *Client) Deals(ctx context.Context) ([]market.Deal, error) {
	var out []market.Deal
	return out, c.do(ctx, http.MethodGet, "/v1/market/deals", nil, &out)
}

// SubmitJob is POST /v1/jobs.
func (c *Client) SubmitJob(ctx context.Context, req SubmitRequest) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodPost, "/v1/jobs", req, &out)
}

// Job is GET /v1/jobs/ID.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &out)
}

// JobCost is GET /v1/jobs/ID/cost: a market job's price, cost so far and
// what was paid, every rank together.
func (c *Client) JobCost(ctx context.Context, id string) (*JobCost, error) {
	var out JobCost
	return &out, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/cost", nil, &out)
}

// Forward is POST /v1/jobs/ID/forward: the daemon publishes the port of a
// service job on listen ([HOST:]PORT) of this machine until the job ends.
func (c *Client) Forward(ctx context.Context, id string, port int, listen string) (*ForwardInfo, error) {
	var out ForwardInfo
	return &out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/forward", ForwardRequest{Port: port, Listen: listen}, &out)
}

// Forwards is GET /v1/jobs/ID/forwards (every job's for "").
func (c *Client) Forwards(ctx context.Context, id string) ([]ForwardInfo, error) {
	var out []ForwardInfo
	path := "/v1/forwards"
	if id != "" {
		path = "/v1/jobs/" + url.PathEscape(id) + "/forwards"
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Jobs is GET /v1/jobs: newest first, each rank after its job.
func (c *Client) Jobs(ctx context.Context) ([]JobListEntry, error) {
	var out []JobListEntry
	return out, c.do(ctx, http.MethodGet, "/v1/jobs", nil, &out)
}

// CancelJob is POST /v1/jobs/ID/cancel.
func (c *Client) CancelJob(ctx context.Context, id string) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, &out)
}

// JobLogs copies a job's output to w; follow keeps going until it ends.
func (c *Client) JobLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	path := "/v1/jobs/" + url.PathEscape(id) + "/logs"
	if follow {
		path += "?follow=1"
	}
	resp, err := c.stream(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// DashboardLogin asks for a one-time login link (the token is required).
func (c *Client) DashboardLogin(ctx context.Context) (DashboardLogin, error) {
	var out DashboardLogin
	err := c.do(ctx, http.MethodPost, "/v1/dashboard/login", struct{}{}, &out)
	return out, err
}

// LoginCode says whether the login link's code was used or has died.
func (c *Client) LoginCode(ctx context.Context, id string) (LoginCodeState, error) {
	var out LoginCodeState
	err := c.do(ctx, http.MethodGet, "/v1/dashboard/login/"+url.PathEscape(id), nil, &out)
	return out, err
}

// LogoutAll ends every dashboard session and kills every waiting login link.
func (c *Client) LogoutAll(ctx context.Context) (LogoutResult, error) {
	var out LogoutResult
	err := c.do(ctx, http.MethodPost, "/v1/dashboard/logout-all", struct{}{}, &out)
	return out, err
}
